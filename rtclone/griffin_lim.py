"""Streaming Griffin-Lim: phase recovery on segments of a mel stream, joined without seams.

``audio.griffin_lim`` needs the whole utterance, so a stream built on it yields nothing until the
synthesizer has finished a text chunk (≈ 2 s of audio, most of the time to first audio). Here the
mel frames are vocoded in segments as they arrive (``SegmentPlan``: 24 frames first, doubling to
128) and each segment's samples are yielded at once:

* a segment iterates over its frames plus ``left`` frames already played and ``right`` frames
  not yet played (their samples are still incomplete: frames past the segment are missing);
* the samples already played are held fixed inside every iteration (the consistent projection
  sees the true past), so the new samples continue the played ones instead of being glued on;
* the phases the previous segment found for the frames it shares with this one start its
  iterations (the rest start from the seeded random phase), so the estimate carries across.

The pieces are in the pre-emphasis domain; de-emphasis, the peak limit and the fade-out are the
vocoder's (``rtclone.vocoder_gen.GriffinLimVocoder.stream``). The segments' boundaries depend only
on the frame count (not on how the mel arrives), so the output is a deterministic function of the
mel and the seed. It is close to, not equal to, the whole-utterance ``audio.griffin_lim`` (another
local optimum of the same objective).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from . import audio
from .errors import InputShapeError, OptionsError
from .mel_inverter import InverterStream, MelInverter

__all__ = ["SegmentPlan", "stream_segments"]


@dataclass(frozen=True)
class SegmentPlan:
    """How a mel stream is cut into Griffin-Lim segments (all sizes in mel frames)."""

    first: int = 24  # frames played by the first segment (small: the first audio comes early)
    longest: int = 128  # segments double in length up to this (longer: less context overhead)
    left: int = 4  # played frames each segment re-reads (≥ 3: n_fft spans 4 hops, the edge frame sees padding)
    right: int = 4  # frames past a segment it iterates on but does not play (their samples are incomplete)

    def __post_init__(self) -> None:
        for name, lo in (("first", 1), ("longest", 1), ("left", 3), ("right", 3)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= 100_000:
                raise OptionsError(f"SegmentPlan.{name} must be an integer >= {lo}, got {v!r}")
        if self.longest < self.first:
            raise OptionsError(f"SegmentPlan.longest ({self.longest}) must be >= first ({self.first})")

    def size(self, k: int) -> int:
        """Frames played by segment k."""
        return min(self.longest, self.first << min(k, 30))


def stream_segments(mel_chunks: Iterable[np.ndarray], *, n_iter: int, power: float, seed: int,
                    plan: SegmentPlan = SegmentPlan(), formants: float = 0.0,
                    inverter: "MelInverter | None" = None) -> Iterator[np.ndarray]:  # fmt: skip
    """Yield float32 pre-emphasis PCM pieces of checked mel chunks (80, t) as segments complete.

    The concatenation has ``(T - 1) * hop`` samples for T frames in all, like ``audio.griffin_lim``
    cut to the vocoder length. Raises :class:`InputShapeError` when no frame arrives. With an
    ``inverter`` (:class:`rtclone.mel_inverter.MelInverter`) the magnitudes are its, not the
    pseudo-inverse's (``formants`` then does not apply), and lag its look-ahead behind the mel, except the
    first segment's: the first audio comes after ``plan.first + plan.right`` frames, as without an inverter.
    """
    # the inverter's first block ends where the first segment's frames do, and does not wait for its look-ahead (its
    # last frames see the block's last mel frame repeated): waiting cost one more synthesizer chunk, +10 ms to the first
    # audio (session 25); shortening the first segment instead left less audio in hand (behind the server, 1-2 of 40
    # streams of 8 clients in real time against 19-23).
    inv = InverterStream(inverter, first=plan.first + plan.right, first_lookahead=0) if inverter is not None else None

    def to_linear(mel: np.ndarray | None) -> np.ndarray:  # (t, F) magnitudes raised to ``power``; None: flush
        if inv is None:
            lin = audio.synth_mel_to_linear(mel, formants) if mel is not None else np.zeros((audio.SYN_N_FFT // 2 + 1, 0))
        else:
            lin = inv.push(mel) if mel is not None else inv.flush()
        return (lin.T ** power).astype(np.float32)

    hop = audio.SYN_HOP
    rng = np.random.default_rng(seed)
    base = 0  # the first frame ``mags`` and ``phases`` hold (the last segment's first frame)
    mags = np.zeros((0, audio.SYN_N_FFT // 2 + 1), np.float32)  # (t, F) frames [base, n_frames), raised to ``power``
    phases = np.zeros((0, audio.SYN_N_FFT // 2 + 1), np.complex64)  # the last segment's final phases, from ``base``
    n_frames = 0
    played = 0  # frames whose samples have been made (samples [0, played * hop))
    tail = np.zeros(0, np.float32)  # the last left * hop samples made

    def run(stop: int, last: bool) -> np.ndarray:
        """Make the samples of frames [played, stop) (to the end when ``last``)."""
        nonlocal base, mags, phases, played, tail
        lo = max(0, played - plan.left)
        hi = n_frames if last else stop + plan.right
        mags, phases, base = mags[lo - base :], phases[lo - base :], lo  # frames before lo are never read again
        mag = mags[: hi - lo]
        init = np.exp(2j * np.pi * rng.random(mag.shape)).astype(np.complex64)
        carried = phases[: hi - lo]
        init[: len(carried)] = carried
        known = tail[len(tail) - (played - lo) * hop :] if played > lo else None  # the played samples it re-reads
        x, phases = audio.griffin_lim_iterate(mag, init, n_iter, (hi - lo - 1) * hop, known)
        end = (n_frames - 1) * hop if last else stop * hop
        new = x[(played - lo) * hop : end - lo * hop]
        tail = x[max(0, end - lo * hop - plan.left * hop) : end - lo * hop]
        played = n_frames if last else stop
        return new

    k = 0
    for mel in mel_chunks:
        if mel.shape[1] == 0:
            continue
        new = to_linear(mel)
        mags = np.concatenate([mags, new], 0)
        n_frames += len(new)
        while played + plan.size(k) + plan.right <= n_frames:
            yield run(played + plan.size(k), False)
            k += 1
    new = to_linear(None)  # the inverter's last look-ahead frames
    mags = np.concatenate([mags, new], 0)
    n_frames += len(new)
    if n_frames == 0:
        raise InputShapeError("mel has zero frames")
    yield run(n_frames, True)
