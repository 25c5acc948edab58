"""The cloning pipeline: reference audio → embedding → mel stream → PCM stream.

The pipeline knows no socket. The server, the CLI and the Python API all drive a
:class:`VoiceEngine`: anything with ``sample_rate``, ``embed(audio, sr)`` and
``stream(text, embedding, options)``. :class:`Cloner` is the real one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Iterator, Protocol

import numpy as np

from .errors import OptionsError

BACKENDS = ("auto", "torch", "cpu-native", "triton")


@dataclass(frozen=True)
class SynthesisOptions:
    """Run-time options of one synthesis request (validated here, in one place)."""

    seed: int = 0  # sampling seed: the same seed gives the same audio
    backend: str = "auto"  # vocoder backend: auto | torch | cpu-native | triton
    max_chars: int = 5000  # longest text accepted in one request
    first_chunk_words: int = 6  # the first text chunk is cut short so audio starts early
    max_chunk_words: int = 30  # longer sentences are split at commas or this many words
    vocoder_chunk_frames: int = 10  # mel frames handed to the vocoder stream at a time
    max_decoder_steps: int = 2000  # synthesizer guard per text chunk (decoder steps)
    fade_out_s: float = 0.0  # fade the very end of the utterance out over this many seconds

    def __post_init__(self) -> None:
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or not 0 <= self.seed < 2**63:
            raise OptionsError(f"seed must be an integer in [0, 2**63), got {self.seed!r}")
        if self.backend not in BACKENDS:
            raise OptionsError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        for name, lo, hi in (
            ("max_chars", 1, 1_000_000),
            ("first_chunk_words", 1, 1000),
            ("max_chunk_words", 1, 1000),
            ("vocoder_chunk_frames", 1, 10_000),
            ("max_decoder_steps", 1, 100_000),
        ):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
                raise OptionsError(f"{name} must be an integer in [{lo}, {hi}], got {v!r}")
        if not isinstance(self.fade_out_s, (int, float)) or not 0.0 <= self.fade_out_s <= 5.0:
            raise OptionsError(f"fade_out_s must be a number in [0, 5], got {self.fade_out_s!r}")

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "SynthesisOptions":
        """Options from a JSON object (e.g. a wire message); unknown keys are an OptionsError."""
        d = dict(d or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise OptionsError(f"unknown option(s) {unknown}; known: {sorted(known)}")
        return cls(**d)


class VoiceEngine(Protocol):
    """What the server, the CLI and the clients need from a cloning engine."""

    sample_rate: int

    def embed(self, audio: np.ndarray, sr: int) -> np.ndarray:
        """Reference audio (float32 mono at ``sr``) → L2-normalised embedding (D,). Raises AudioError subclasses."""
        ...

    def stream(self, text: str, embedding: np.ndarray, options: SynthesisOptions = SynthesisOptions()) -> Iterator[np.ndarray]:
        """Yield float32 PCM chunks at ``sample_rate`` as they are made. Raises TextError/InputShapeError/SynthesisError."""
        ...
