"""What the torchrun entry points share: process-group set-up and rank 0's JSON report."""

from __future__ import annotations

import json
import os
from typing import Any

import torch


def distributed() -> tuple[int, int, bool]:
    """(rank, world size, initialised here) — initialises torch.distributed under torchrun."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, False
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), False
    dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size(), True


def print_report(res: dict[str, Any]) -> None:
    """On rank 0: print a training run's result as one JSON line, its per-step losses cut to the last one."""
    if int(os.environ.get("RANK", "0")) == 0:
        losses = res.get("losses") or []
        print(json.dumps({**{k: v for k, v in res.items() if k != "losses"}, "final_loss": losses[-1] if losses else None}))
