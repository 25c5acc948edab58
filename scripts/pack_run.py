"""Copy a synthesizer training run into a folder to commit, with the optimizer state at half size.

    python scripts/pack_run.py runs/synth-wide training/synth-wide

Copies ``synthesizer.pt`` and ``log.jsonl`` as they are, the newest alignment PNG, and writes
``optimizer.pt`` with Adam's moment tensors in bfloat16 (half the bytes; on resume
``Optimizer.load_state_dict`` casts them back to the parameters' float32). Checkpoints are
committed so a later session, on a fresh machine, can resume the run; every byte stays in the
repository's history, hence the halving. bfloat16 keeps float32's exponent range, so the tiny
second moments do not underflow as they would in float16.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import torch


def pack_optimizer(src: Path, dst: Path) -> int:
    """Write ``src`` (a trainer's optimizer.pt) to ``dst`` with float32 moments as bfloat16; returns bytes."""
    saved = torch.load(src, map_location="cpu", weights_only=True)
    for state in saved["optimizer"]["state"].values():
        for key, v in state.items():
            if key != "step" and torch.is_tensor(v) and v.dtype == torch.float32:
                state[key] = v.to(torch.bfloat16)
    tmp = dst.with_name(dst.name + ".tmp")
    torch.save(saved, tmp)
    tmp.replace(dst)
    return dst.stat().st_size


def pack_run(src: Path, dst: Path) -> dict:
    dst.mkdir(parents=True, exist_ok=True)
    done = {}
    for name in ("synthesizer.pt", "log.jsonl"):
        shutil.copyfile(src / name, dst / name)
        done[name] = (dst / name).stat().st_size
    if (src / "optimizer.pt").is_file():
        done["optimizer.pt"] = pack_optimizer(src / "optimizer.pt", dst / "optimizer.pt")
    pngs = sorted((src / "alignments").glob("step-*.png"))
    if pngs:
        for old in dst.glob("step-*.png"):
            old.unlink()
        shutil.copyfile(pngs[-1], dst / pngs[-1].name)
        done[pngs[-1].name] = pngs[-1].stat().st_size
    return done


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("src", type=Path, help="a run directory (synthesizer.pt, optimizer.pt, log.jsonl, alignments/)")
    p.add_argument("dst", type=Path, help="the folder to commit")
    a = p.parse_args(argv)
    for name, size in pack_run(a.src, a.dst).items():
        print(f"{a.dst / name}: {size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
