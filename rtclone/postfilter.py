"""Mel-envelope post-filter: pull a vocoder's output spectrum to the mel it was asked to speak.

A WaveRNN that is not fully trained (or is pruned hard) adds a noise floor: its output's mel sits
above the target everywhere, most in quiet frames, and pocketsphinx stops understanding it. This
filter works on the STFT the synthesizer mels are defined on (``audio.synth_mel``: Hann 800, hop
200, centred, on the pre-emphasised signal, which is the WaveRNN's own output domain): for each
frame ``t`` and mel band ``b`` the gain is

    g[t, b] = min(max_gain, target[t, b] / output[t, b])      (mel amplitudes; max_gain -> 1 for
                                                               bands at the mel's -100 dB floor)

spread over the FFT bins with the filterbank's normalised weights (bins outside 55-7600 Hz, where
the mel says nothing, get gain 0 as in Griffin-Lim's pseudo-inverse), applied to the frame's
spectrum, and the frames are overlap-added back (least-squares inverse STFT). The vocoder keeps the
fine structure inside a band (harmonics, phase); the filter imposes the band energies. With a gain
of 1 everywhere the output equals the input.

What it cannot do: supply a voice. It makes any signal with energy in every band follow the mel's
envelope, so even noise comes out partly intelligible (a one-shot 90 %-pruned WaveRNN whose raw output
pocketsphinx does not understand at all, WER 1.0, reached 0.17 through it) and partly voice-like (an
untrained 256-wide WaveRNN, pure noise to pocketsphinx, comes out at WER 0.05 and speaker similarity
0.89 to the recording on the default eval's true mels, where Griffin-Lim gets 0.06 and 0.965). So a
vocoder is judged with it only against that control: ``rtclone eval vocoder --postfilter`` reports an
untrained WaveRNN of the same dims through the same filter (``control_pf_*``) next to it.

Streaming: frame ``t`` needs the samples up to ``t * hop + n_fft / 2`` and mel frame ``t``, so a
push ending on a hop boundary gets all but the last ``LAG`` = 600 samples (37.5 ms) out;
:meth:`MelEnvelopeFilter.finish` flushes the rest. Any chunking of the same input gives the same output.
"""

from __future__ import annotations

import functools

import numpy as np
import scipy.fft

from . import audio
from .errors import InputShapeError, OptionsError

N_FFT, HOP = audio.SYN_N_FFT, audio.SYN_HOP
HALF = N_FFT // 2
LAG = HALF + HOP  # samples held back when pushes end on a hop boundary: frame t needs samples up to t HOP + HALF


@functools.lru_cache(maxsize=1)
def _bases() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(analysis (401, 80), synthesis (80, 401) normalised per bin, window (800,)), float64."""
    basis = audio._synth_basis().astype(np.float64)  # (80, 401)
    weight = basis.sum(axis=0)  # (401,)
    spread = np.divide(basis, weight, out=np.zeros_like(basis), where=weight > 0)  # each bin: weights sum to 1 (or 0)
    out = (np.ascontiguousarray(basis.T), spread, audio._hann(N_FFT).astype(np.float64))
    for a in out:
        a.setflags(write=False)
    return out


def check_max_gain(max_gain: float) -> float:
    if isinstance(max_gain, bool) or not isinstance(max_gain, (int, float)) or not 1.0 <= max_gain <= 1000.0:
        raise OptionsError(f"post-filter max_gain must be a number in [1, 1000], got {max_gain!r}")
    return float(max_gain)


class MelEnvelopeFilter:
    """Streaming mel-envelope post-filter (see the module docstring).

    Feed the target mel frames with :meth:`add_mel` (normalised synthesizer mels, (80, n)) and the
    signal with :meth:`push` (pre-emphasised domain); each call returns the samples that are final.
    :meth:`finish` returns the rest. Frames past the last mel frame are left unfiltered.
    """

    def __init__(self, max_gain: float = 4.0) -> None:
        self.max_gain = check_max_gain(max_gain)
        self._mel = np.zeros((audio.SYN_N_MELS, 0))  # target amplitudes of frames _m0 ..
        self._cap = np.zeros((audio.SYN_N_MELS, 0))  # the most each band of those frames may be raised
        self._m0 = 0
        self._x = np.zeros(0)  # received samples from absolute index _x0 on
        self._x0 = 0
        self._acc = np.zeros(0)  # overlap-add numerator / denominator from absolute index _o0 (next to emit)
        self._norm = np.zeros(0)
        self._o0 = 0
        self._t = 0  # next frame to filter
        self._done = False

    @property
    def n_in(self) -> int:
        return self._x0 + len(self._x)

    def add_mel(self, mel: np.ndarray) -> None:
        mel = np.asarray(mel, dtype=np.float64)
        if mel.ndim != 2 or mel.shape[0] != audio.SYN_N_MELS:
            raise InputShapeError(f"post-filter mel must have shape ({audio.SYN_N_MELS}, n), got {mel.shape}")
        amp = 10.0 ** ((audio._denormalize_db(mel) + audio.REF_LEVEL_DB) / 20.0)
        # a band at the mel's floor (-100 dB) says "at most this loud", not "this loud": never boost it
        cap = np.where(mel <= -audio.MAX_ABS_VALUE + 1e-6, 1.0, self.max_gain)
        self._mel = np.concatenate([self._mel, amp], axis=1)
        self._cap = np.concatenate([self._cap, cap], axis=1)

    def push(self, x: np.ndarray) -> np.ndarray:
        if self._done:
            raise RuntimeError("the post-filter has finished")
        self._x = np.concatenate([self._x, np.asarray(x, dtype=np.float64).reshape(-1)])
        ready = min((self.n_in - HALF) // HOP + 1, self._m0 + self._mel.shape[1])  # frames with all samples and a mel
        self._filter_until(ready)
        return self._emit(min(self._t * HOP - HALF, self.n_in))

    def finish(self) -> np.ndarray:
        """Filter the frames that overlap the received signal (zeros past its end) and return the rest."""
        self._done = True
        last = min((self.n_in + HALF - 1) // HOP + 1 if self.n_in else 0, self._m0 + self._mel.shape[1])
        self._filter_until(last)
        return self._emit(self.n_in)

    def _filter_until(self, t_end: int) -> None:
        if t_end <= self._t:
            return
        to_an, spread, win = _bases()
        t0 = self._t
        lo = t0 * HOP - HALF  # absolute index of the first sample of frame t0
        hi = (t_end - 1) * HOP + HALF
        seg = np.zeros(hi - lo)
        a, b = max(lo, self._x0), min(hi, self.n_in)
        if b > a:
            seg[a - lo : b - lo] = self._x[a - self._x0 : b - self._x0]
        frames = np.lib.stride_tricks.sliding_window_view(seg, N_FFT)[::HOP]  # (F, 800)
        spec = scipy.fft.rfft(frames * win, axis=-1)  # (F, 401)
        have = np.abs(spec) @ to_an  # (F, 80) mel amplitudes of the signal
        frames_now = slice(t0 - self._m0, t_end - self._m0)
        want, cap = self._mel[:, frames_now].T, self._cap[:, frames_now].T  # (F, 80)
        gain = np.minimum(cap, want / np.maximum(have, 1e-10))
        out = scipy.fft.irfft(spec * (gain @ spread), n=N_FFT, axis=-1) * win  # (F, 800)
        # overlap-add into the accumulator (absolute start _o0 <= lo: everything from lo on is pending)
        need = hi - self._o0
        if len(self._acc) < need:
            self._acc = np.pad(self._acc, (0, need - len(self._acc)))
            self._norm = np.pad(self._norm, (0, need - len(self._norm)))
        n_frames = t_end - t0
        pieces = out.reshape(n_frames, N_FFT // HOP, HOP)
        win_sq = (win**2).reshape(N_FFT // HOP, HOP)
        for j in range(N_FFT // HOP):  # frame f's j-th hop-long piece lands at lo + (f + j) HOP: one run per j
            start = lo - self._o0 + j * HOP
            stop = start + n_frames * HOP
            cut = max(0, -start)  # the pieces before sample 0 (negative frames' halves) are dropped
            if stop <= 0:
                continue
            self._acc[start + cut : stop] += pieces[:, j].reshape(-1)[cut:]
            self._norm[start + cut : stop] += np.tile(win_sq[j], n_frames)[cut:]
        self._t = t_end
        # later frames start at t_end * HOP - HALF: drop the samples and mel frames before them
        keep_from = max(self._x0, t_end * HOP - HALF)
        self._x, self._x0 = self._x[keep_from - self._x0 :], keep_from
        self._mel, self._cap, self._m0 = self._mel[:, t_end - self._m0 :], self._cap[:, t_end - self._m0 :], t_end

    def _emit(self, upto: int) -> np.ndarray:
        n = max(0, upto - self._o0)
        if n == 0:
            return np.zeros(0)
        acc, norm = self._acc[:n], self._norm[:n]
        if len(acc) < n:  # samples no frame reached (past the last mel frame): passed through
            acc, norm = np.pad(acc, (0, n - len(acc))), np.pad(norm, (0, n - len(norm)))
        raw = self._raw(self._o0, self._o0 + n)
        covered = norm > 1e-8
        y = np.where(covered, acc / np.where(covered, norm, 1.0), raw)
        self._acc, self._norm = self._acc[n:], self._norm[n:]
        self._o0 += n
        return y

    def _raw(self, a: int, b: int) -> np.ndarray:
        """Input samples [a, b) that are still buffered (zeros for any already dropped: they were covered)."""
        out = np.zeros(b - a)
        lo, hi = max(a, self._x0), min(b, self.n_in)
        if hi > lo:
            out[lo - a : hi - a] = self._x[lo - self._x0 : hi - self._x0]
        return out


def postfilter(x: np.ndarray, mel: np.ndarray, max_gain: float = 4.0) -> np.ndarray:
    """The whole-signal form: pre-emphasised signal ``x`` and its target mel (80, T) -> filtered (same length)."""
    f = MelEnvelopeFilter(max_gain)
    f.add_mel(mel)
    return np.concatenate([f.push(x), f.finish()])


def postfilter_audio(wav: np.ndarray, mel: np.ndarray, max_gain: float = 4.0) -> np.ndarray:
    """``postfilter`` for an ordinary (de-emphasised) waveform: pre-emphasis, filter, de-emphasis; float32."""
    return audio.de_emphasis(postfilter(audio.pre_emphasis(np.asarray(wav, dtype=np.float64)), mel, max_gain)).astype(np.float32)
