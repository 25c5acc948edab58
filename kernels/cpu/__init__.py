"""Native CPU kernel of the WaveRNN sample loop (optional accelerator; torch reference alongside).

- :class:`NativeWaveRNN` runs the whole autoregressive loop (I → GRU1 → GRU2 → FC1 → FC2 → FC3 →
  sample → next input) in C for many samples per call, on block-sparse weights, B streams across
  threads. Built by setup.py as ``rtclone.kernels.cpu._native``; importing this package never
  fails when it is missing: check :func:`available` / :func:`unavailable_reason`.
- :func:`reference_generate` is the plain-torch loop of the same spec (the tests' oracle).
"""

from .reference import (
    LoopDims,
    State,
    check_inputs,
    draw_uniforms,
    fold_count,
    labels_from_samples,
    loop_dims,
    reference_generate,
    replay_reference,
    sample_mol,
    sample_raw,
)
from .wavernn import NativeWaveRNN, available, unavailable_reason

__all__ = [
    "LoopDims",
    "NativeWaveRNN",
    "State",
    "available",
    "check_inputs",
    "draw_uniforms",
    "fold_count",
    "labels_from_samples",
    "loop_dims",
    "reference_generate",
    "replay_reference",
    "sample_mol",
    "sample_raw",
    "unavailable_reason",
]
