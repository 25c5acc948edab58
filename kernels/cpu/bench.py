"""One vocoder-loop measurement on random RTVC-dims weights (for ``rtclone bench vocoder``).

Also the random, block-pruned RTVC-shaped state dicts the tests and benchmark scripts use.
Only the sample loop is timed: the conditioning network (upsampling of the mel) is not run;
``cond`` is random.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable

import torch

from rtclone.errors import BackendUnavailableError, OptionsError
from rtclone.sparse import block_mask

from .reference import BIAS_KEYS, MATRIX_KEYS, MOL_OUTPUTS, draw_uniforms, fold_count, loop_shapes, reference_generate
from .wavernn import NativeWaveRNN, available, unavailable_reason

SAMPLE_RATE = 16000
FOLD_TARGET, FOLD_OVERLAP = 8000, 800  # RTVC's batched generation


def prune_blocks(w: torch.Tensor, sparsity: float, block: tuple[int, int]) -> torch.Tensor:
    """A copy of ``w`` with the ``sparsity`` fraction of its (bh, bw) blocks zeroed
    (rtclone.sparse.block_mask: smallest L1 magnitude first); rows that do not fill a last block
    (MoL's 30-row fc3) are pruned as if padded with zero rows."""
    rows, cols = w.shape
    bh = block[0]
    if rows % bh:
        padded = torch.cat([w, w.new_zeros(bh - rows % bh, cols)])
        return prune_blocks(padded, sparsity, block)[:rows]
    return w * block_mask(w, block, sparsity)


def random_state_dict(
    sparsity: float = 0.0,
    *,
    block: tuple[int, int] = (16, 1),
    rnn_dims: int = 512,
    fc_dims: int = 512,
    feat_dims: int = 80,
    aux_dims: int = 32,
    mode: str = "RAW",
    bits: int = 9,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """An RTVC-keyed WaveRNN loop state dict (defaults: RTVC dims) with uniform(±1/sqrt(fan_in))
    weights; every loop matrix is block-pruned to ``sparsity`` (I with (bh, 1) blocks)."""
    g = torch.Generator().manual_seed(seed)
    R, Fd, aux = rnn_dims, fc_dims, aux_dims
    n_out = MOL_OUTPUTS if mode.upper() == "MOL" else 2**bits
    shapes = loop_shapes(R, Fd, feat_dims, aux, n_out)
    sd: dict[str, torch.Tensor] = {}
    for key, bias_key in zip(MATRIX_KEYS, BIAS_KEYS):
        rows, cols = shapes[key]
        bound = cols**-0.5
        w = (torch.rand(rows, cols, generator=g) * 2 - 1) * bound
        blk = (block[0], 1) if key == "I.weight" else block
        sd[key] = prune_blocks(w, sparsity, blk) if sparsity > 0 else w
        sd[bias_key] = (torch.rand(rows, generator=g) * 2 - 1) * bound
    return sd


def machine_info() -> dict:
    """CPU model, core count and torch version (for benchmark records)."""
    model = platform.processor()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version()}


def measure(run: Callable[[], object], reps: int = 3, warmup: int = 1) -> dict:
    """Seconds of ``run()`` over ``reps`` timed calls after ``warmup``: wall median/min/max, and the
    median process CPU time ("cpu", summed over threads): on a shared machine the CPU time is what
    the work costs on an idle core, while wall time includes waiting for other processes."""
    for _ in range(warmup):
        run()
    times, cpu = [], []
    for _ in range(reps):
        c0, t0 = time.process_time(), time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    times.sort()
    cpu.sort()
    return {"median": times[len(times) // 2], "min": times[0], "max": times[-1], "cpu": cpu[len(cpu) // 2], "reps": reps}


def bench_vocoder(
    sparsity: float,
    seconds: float,
    backend: str,
    batched: bool = False,
    block: tuple[int, int] = (16, 1),
    seed: int = 0,
    *,
    value_dtype: torch.dtype = torch.float32,
    threads: int = 1,
) -> dict:
    """Time the sample loop for ``seconds`` of 16 kHz audio on random RTVC-dims weights.

    backend: "cpu-native", "torch" (the plain-torch reference loop) or "auto" (native if built).
    batched: RTVC folding (target 8000, overlap 800 → B folds of 9600 steps; a single fold of T
    steps when T ≤ 9600); ``threads`` native threads across the folds. Returns samples_per_s
    (audio samples per wall second), rtf (wall / audio seconds), cpu_s (process CPU time), wall_s,
    steps, batch and the setup.
    """
    if not 0.0 <= sparsity < 1.0:
        raise OptionsError(f"sparsity must be in [0, 1), got {sparsity}")
    if seconds <= 0:
        raise OptionsError(f"seconds must be > 0, got {seconds}")
    if backend == "auto":
        backend = "cpu-native" if available() else "torch"
    if backend not in ("cpu-native", "torch"):
        raise OptionsError(f"backend must be 'auto', 'cpu-native' or 'torch', got {backend!r}")
    if backend == "cpu-native" and not available():
        raise BackendUnavailableError(unavailable_reason() or "native CPU kernel unavailable")
    total = int(round(seconds * SAMPLE_RATE))
    B = fold_count(total, FOLD_TARGET, FOLD_OVERLAP) if batched else 1
    steps = total if B == 1 else FOLD_TARGET + 2 * FOLD_OVERLAP
    sd = random_state_dict(sparsity, block=block, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    cond = torch.randn(B, steps, 208, generator=g) * 0.5
    uniforms = draw_uniforms(B, steps, seed)
    t0 = time.perf_counter()
    if backend == "cpu-native":
        model = NativeWaveRNN(sd, block=block, value_dtype=value_dtype, threads=threads)
        setup_s = time.perf_counter() - t0
        c0, t0 = time.process_time(), time.perf_counter()
        model.generate(cond, uniforms)
    else:
        setup_s = 0.0
        c0 = time.process_time()
        reference_generate(sd, cond, uniforms)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    return {
        "backend": backend,
        "sparsity": sparsity,
        "block": list(block),
        "seconds": seconds,
        "batched": batched,
        "batch": B,
        "steps": steps,
        "samples": total,
        "wall_s": wall,
        "cpu_s": cpu,
        "setup_s": setup_s,
        "samples_per_s": total / wall,
        "samples_per_cpu_s": total / cpu if cpu > 0 else None,  # per core-second (shared machines)
        "steps_per_s": B * steps / wall,
        "rtf": wall / seconds,
        "value_dtype": str(value_dtype).replace("torch.", ""),
        "threads": threads,
        "note": "sample loop only (random conditioning, upsample network not run)",
        "machine": machine_info(),
    }
