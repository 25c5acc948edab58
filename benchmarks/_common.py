"""Helpers shared by the benchmark scripts: machine record, interleaved wall/CPU timing, JSON output.

The scripts run as ``python benchmarks/x.py``, so this module is imported as ``import _common``
(the script's folder is first on ``sys.path``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np


def machine(**extra: object) -> dict:
    """CPU model, core count, torch and Python versions (rtclone.kernels.cpu.bench.machine_info),
    plus ``extra`` fields (threads, load average, ...)."""
    from rtclone.kernels.cpu.bench import machine_info  # imports torch: only when a record is made

    return {**machine_info(), **extra}


def timing_stats(wall_s: list[float], cpu_s: list[float]) -> dict[str, float]:
    """Median, quartiles, IQR and min (ms) of wall times and median and IQR (ms) of CPU times (seconds in)."""
    q1, med, q3 = np.percentile(np.asarray(wall_s) * 1000.0, [25, 50, 75])
    c1, cmed, c3 = np.percentile(np.asarray(cpu_s) * 1000.0, [25, 50, 75])
    return {"median_ms": float(med), "iqr_ms": float(q3 - q1), "q1_ms": float(q1), "q3_ms": float(q3),
            "min_ms": float(min(wall_s) * 1000.0), "cpu_median_ms": float(cmed), "cpu_iqr_ms": float(c3 - c1),
            "runs": len(wall_s)}  # fmt: skip


def interleaved(fns: dict[str, Callable[[], object]], runs: int, warmup: int = 2) -> dict[str, dict[str, float]]:
    """:func:`timing_stats` of wall and process-CPU time per function, runs interleaved (a, b, a, b, ...).

    Interleaving makes load from other processes hit every function alike; on a shared machine
    the CPU time is what the work costs on an idle core, while wall time includes waiting.
    """
    for _ in range(warmup):
        for f in fns.values():
            f()
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(runs):
        for k, f in fns.items():
            c0, t0 = time.process_time(), time.perf_counter()
            f()
            wall[k].append(time.perf_counter() - t0)
            cpu[k].append(time.process_time() - c0)
    return {k: timing_stats(wall[k], cpu[k]) for k in fns}


def write_json(path: str | Path, data: object, indent: int = 2) -> Path:
    """Write ``data`` as JSON to ``path`` (creating its folder) and print where."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=indent) + "\n")
    print(f"wrote {out}")
    return out


def run_record(benchmark: str, quick: bool, load_start: tuple[float, ...], load_end: tuple[float, ...]) -> dict:
    """The head of a loop benchmark's JSON record: name, quick flag, machine, 1-min load average at start/end."""
    return {"benchmark": benchmark, "quick": quick, "machine": machine(), "load_avg_start_end": [load_start[0], load_end[0]]}
