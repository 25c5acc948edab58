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
  iterations (the rest start from the seeded random phase), so the estimate carries across;
* de-emphasis keeps its filter state across segments; a peak limiter lowers the gain (never
  raises it) when a segment would pass ``peak``, ramping over 10 ms; the last ``fade_out``
  samples are held back until the stream ends, then faded.

The segments' boundaries depend only on the frame count (not on how the mel arrives), so the
output is a deterministic function of the mel and the seed. It is close to, not equal to, the
whole-utterance ``audio.griffin_lim`` (another local optimum of the same objective).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import scipy.signal

from . import audio
from .errors import InputShapeError, OptionsError

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


def stream_segments(mel_chunks: Iterable[np.ndarray], *, n_iter: int, power: float, seed: int, peak: float,
                    fade_samples: int, plan: SegmentPlan = SegmentPlan()) -> Iterator[np.ndarray]:  # fmt: skip
    """Yield float64 PCM pieces of the mel chunks (80, t) as segments complete (see the module doc).

    The concatenation has ``(T - 1) * hop`` samples for T frames in all, like ``audio.griffin_lim``
    cut to the vocoder length. Raises :class:`InputShapeError` when no frame arrives.
    """
    hop = audio.SYN_HOP
    rng = np.random.default_rng(seed)
    mags = np.zeros((0, audio.SYN_N_FFT // 2 + 1), np.float32)  # (t, F) frames [mag0, n_frames), raised to ``power``
    mag0 = 0
    n_frames = 0
    phases = np.zeros((0, audio.SYN_N_FFT // 2 + 1), np.complex64)  # phases[i] is frame phase0 + i
    phase0 = 0
    played = 0  # frames whose samples have been made (samples [0, played * hop))
    tail = np.zeros(0, np.float32)  # the last left * hop pre-emphasis samples made
    zi = np.zeros(1)  # de-emphasis state
    gain = 1.0
    pending = np.zeros(0)  # made, not yet yielded (the fade-out hold-back)
    k = 0

    def run(stop: int, last: bool) -> np.ndarray:
        """Make samples for frames [played, stop) (to the end when ``last``); returns them post-processed."""
        nonlocal mags, mag0, phases, phase0, played, tail, zi, gain
        lo = max(0, played - plan.left)
        hi = n_frames if last else stop + plan.right
        mags, mag0 = mags[lo - mag0 :], lo  # frames before lo are never read again
        mag = mags[: hi - lo]
        init = np.exp(2j * np.pi * rng.random(mag.shape)).astype(np.complex64)
        carried = phases[max(0, lo - phase0) : max(0, hi - phase0)]
        init[: len(carried)] = carried
        known = tail[len(tail) - (played - lo) * hop :] if played > lo else None  # the played samples it re-reads
        x, ph = audio.griffin_lim_iterate(mag, init, n_iter, (hi - lo - 1) * hop, known)
        phases, phase0 = ph, lo
        end = (n_frames - 1) * hop if last else stop * hop
        new = x[(played - lo) * hop : end - lo * hop]
        tail = x[max(0, end - lo * hop - plan.left * hop) : end - lo * hop]
        played = n_frames if last else stop
        y, zi = scipy.signal.lfilter([1.0], [1.0, -audio.PREEMPHASIS], new.astype(np.float64), zi=zi)
        top = float(np.abs(y).max()) if y.size else 0.0
        if top * gain > peak:
            new_gain = peak / top
            ramp = min(len(y), int(0.01 * audio.SAMPLE_RATE))
            y[:ramp] *= np.linspace(gain, new_gain, ramp, endpoint=False)
            y[ramp:] *= new_gain
            gain = new_gain
        elif gain != 1.0:
            y *= gain
        return y

    for chunk in mel_chunks:
        mel = np.asarray(chunk, dtype=np.float32)
        if mel.ndim != 2 or mel.shape[0] != audio.SYN_N_MELS:
            raise InputShapeError(f"mel chunks must be ({audio.SYN_N_MELS}, t), got {mel.shape}")
        if mel.shape[1] == 0:
            continue
        mags = np.concatenate([mags, (audio.synth_mel_to_linear(mel).T ** power).astype(np.float32)], 0)
        n_frames += mel.shape[1]
        while played + plan.size(k) + plan.right <= n_frames:
            pending = np.concatenate([pending, run(played + plan.size(k), False)])
            k += 1
            cut = len(pending) - fade_samples
            if cut > 0:
                yield pending[:cut]
                pending = pending[cut:]
    if n_frames == 0:
        raise InputShapeError("mel has zero frames")
    pending = np.concatenate([pending, run(n_frames, True)])
    n = min(fade_samples, len(pending))
    if n > 0:
        pending[-n:] *= np.linspace(1.0, 0.0, n)
    if len(pending):
        yield pending
