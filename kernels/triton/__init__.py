"""Triton kernels for the vocoder's hot loop (GPU; tested on the CPU with ``TRITON_INTERPRET=1``).

Modules (each holds the ``@triton.jit`` kernel, its launcher and a plain-torch reference):

- ``bsr_gemv``     block-sparse GEMV/GEMM on :class:`rtclone.sparse.BlockSparseMatrix` (B = 1…64)
- ``sampling``     categorical (RAW) and mixture-of-logistics (MoL) sampling, Philox-seeded or
                   from pre-drawn uniforms, with no host synchronisation
- ``wavernn_step`` a persistent kernel running the whole WaveRNN sample loop (many steps per
                   launch, state on device) and :class:`TritonWaveRNN`, the ``backend="triton"``
                   entry point

Importing this package does not import triton: the kernel modules are loaded on first attribute
access, so ``import rtclone.kernels.triton`` works where triton is not installed. Check
:func:`available` first; launchers raise :class:`rtclone.errors.BackendUnavailableError` otherwise.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from typing import Any

__all__ = [
    "available",
    "unavailable_reason",
    "interpreting",
    "bsr_matmul",
    "bsr_matmul_reference",
    "sample",
    "sample_reference",
    "philox_uniforms",
    "TritonWaveRNN",
    "wavernn_reference",
]

_LAZY = {
    "bsr_matmul": "bsr_gemv",
    "bsr_matmul_reference": "bsr_gemv",
    "sample": "sampling",
    "sample_reference": "sampling",
    "philox_uniforms": "sampling",
    "TritonWaveRNN": "wavernn_step",
    "wavernn_reference": "wavernn_step",
}


def interpreting() -> bool:
    """True when ``TRITON_INTERPRET`` asks triton to run kernels in its CPU interpreter."""
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "yes", "on")


def unavailable_reason() -> str | None:
    """Why the Triton kernels cannot run here, or ``None`` when they can."""
    if importlib.util.find_spec("triton") is None:
        return "triton is not installed (pip install 'rtclone[gpu]')"
    import torch

    if not torch.cuda.is_available() and not interpreting():
        return "no CUDA device (set TRITON_INTERPRET=1 to run the kernels slowly in triton's CPU interpreter)"
    return None


def available() -> bool:
    """True when the Triton kernels can run (a CUDA device, or the interpreter on CPU)."""
    return unavailable_reason() is None


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if importlib.util.find_spec("triton") is None:
        from rtclone.errors import BackendUnavailableError

        raise BackendUnavailableError(f"rtclone.kernels.triton.{name} needs triton, which is not installed")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def require_backend(*tensors: Any) -> None:
    """Raise ``BackendUnavailableError`` unless the kernels can run on the given tensors.

    Outside the interpreter every tensor must be on a CUDA device; all must share one device.
    """
    from rtclone.errors import BackendUnavailableError, InputShapeError

    reason = unavailable_reason()
    if reason is not None:
        raise BackendUnavailableError(f"triton backend unavailable: {reason}")
    devices = {t.device for t in tensors}
    if len(devices) > 1:
        raise InputShapeError(f"triton kernels need all tensors on one device, got {sorted(map(str, devices))}")
    if not interpreting() and any(d.type != "cuda" for d in devices):
        raise InputShapeError(f"triton kernels need CUDA tensors, got {sorted(map(str, devices))}")
