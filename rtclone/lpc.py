"""Linear prediction from the synthesizer mel: the excitation domain of an LPC WaveRNN.

A WaveRNN with ``dims.lpc_order = p > 0`` does not model the (pre-emphasised) waveform ``s`` but
its *excitation*: the residual of an order-``p`` all-pole model whose coefficients come from the
mel itself (so the same filter exists at training and at inference, with no extra input):

    e[n] = s[n] + sum_k a_k[t(n)] s[n - k],   z[n] = EXCITATION_SCALE * e[n] / g[t(n)]

per mel frame ``t`` (sample ``n`` belongs to the frame whose centre ``t * hop`` is nearest). The
network learns ``z`` (pitch pulses and noise at about unit level), and generation runs ``z``
back through the synthesis filter ``1 / A(z)``: the envelope comes from the mel by construction, and
the sampling noise of an under-trained network is shaped by the spectral envelope instead of
lying flat under it (the noise floor a plain WaveRNN shows in quiet bands). The idea is the
excitation vocoders' (ExcitNet, LPCNet); the WaveRNN and its kernels are unchanged.

The coefficients: the mel -> linear magnitude (the filterbank's pseudo-inverse,
:func:`rtclone.audio.synth_mel_to_linear`), power spectrum with a floor ``FLOOR_DB`` under each
frame's peak, autocorrelation, a Gaussian lag window (``LAG_HZ``), Levinson-Durbin (stable: every
reflection coefficient is < 1 in magnitude). ``g`` is the predictor's residual level per sample.
"""

from __future__ import annotations

import numpy as np

from . import audio
from .errors import InputShapeError

EXCITATION_SCALE = 0.08  # unit excitation -> the network's [-1, 1] range (99.9 % of |z| < 0.8 on corpus v2)
FLOOR_DB = -50.0  # spectral floor under each frame's peak before the autocorrelation
LAG_HZ = 60.0  # Gaussian lag window: smooths the envelope's peaks to ~ this bandwidth


def mel_lpc(mel: np.ndarray, order: int) -> tuple[np.ndarray, np.ndarray]:
    """Synthesizer mel (80, T) -> predictor coefficients ``a`` (T, order + 1) with a[:, 0] = 1 and
    the residual level ``g`` (T,) per sample (float64)."""
    mel = np.asarray(mel, dtype=np.float64)
    if mel.ndim != 2 or mel.shape[0] != audio.SYN_N_MELS:
        raise InputShapeError(f"expected a ({audio.SYN_N_MELS}, T) mel, got shape {mel.shape}")
    if not 1 <= order < audio.SYN_N_FFT // 2:
        raise InputShapeError(f"LPC order must be in [1, {audio.SYN_N_FFT // 2}), got {order}")
    power = audio.synth_mel_to_linear(mel).T ** 2  # (T, 401)
    power = power + power.max(1, keepdims=True) * 10.0 ** (FLOOR_DB / 10.0)
    r = np.fft.irfft(power, n=audio.SYN_N_FFT, axis=1)[:, : order + 1]  # (T, order + 1)
    lags = 2.0 * np.pi * LAG_HZ * np.arange(order + 1) / audio.SAMPLE_RATE
    r = r * np.exp(-0.5 * lags**2)
    r[:, 0] *= 1.0 + 1e-4  # white-noise correction
    a = np.zeros((mel.shape[1], order + 1))
    a[:, 0] = 1.0
    err = r[:, 0].copy()
    for i in range(1, order + 1):  # Levinson-Durbin, all frames at once
        k = -(r[:, i] + np.sum(a[:, 1:i] * r[:, i - 1 : 0 : -1], axis=1)) / err
        a[:, 1:i] = a[:, 1:i] + k[:, None] * a[:, i - 1 : 0 : -1]
        a[:, i] = k
        err = err * (1.0 - k * k)
    window_power = float(np.sum(audio._hann(audio.SYN_N_FFT) ** 2))  # sum w^2 of the mel's STFT window
    return a, np.sqrt(np.maximum(err, 1e-20) / window_power)


def frame_of(n: int, start: int, hop: int, n_frames: int) -> np.ndarray:
    """Frame index of samples ``start .. start + n - 1``: the frame whose centre is nearest, clipped."""
    return np.minimum((np.arange(start, start + n) + hop // 2) // hop, n_frames - 1)


def excitation(sig: np.ndarray, a: np.ndarray, g: np.ndarray, hop: int) -> np.ndarray:
    """Pre-emphasised signal (N,) -> the network's excitation ``z`` (N,) (float64; not clipped)."""
    sig = np.asarray(sig, dtype=np.float64)
    p = a.shape[1] - 1
    fr = frame_of(len(sig), 0, hop, a.shape[0])
    coef = a[fr]  # (N, p + 1)
    past = np.concatenate([np.zeros(p), sig])
    e = sig.copy()
    for k in range(1, p + 1):
        e += coef[:, k] * past[p - k : p - k + len(sig)]
    return EXCITATION_SCALE * e / g[fr]


class LpcSynthesis:
    """Stateful ``1 / A(z)`` for a stream: frames' coefficients in with :meth:`add_mel`, excitation
    through :meth:`push` (any chunking gives the same output as one call)."""

    def __init__(self, order: int, hop: int) -> None:
        self.order, self.hop = order, hop
        self.a = np.zeros((0, order + 1))
        self.g = np.zeros(0)
        self.frame0 = 0  # absolute index of self.a[0]
        self.pos = 0  # absolute index of the next sample
        self.past = np.zeros(order)  # last ``order`` outputs, oldest first

    def add_mel(self, mel: np.ndarray) -> None:
        if mel.shape[1]:
            a, g = mel_lpc(mel, self.order)
            self.a, self.g = np.concatenate([self.a, a]), np.concatenate([self.g, g])

    def push(self, z: np.ndarray) -> np.ndarray:
        """Excitation (n,) -> pre-emphasised signal (n,) (float64)."""
        from scipy.signal import lfilter, lfiltic

        z = np.asarray(z, dtype=np.float64)
        n_known = self.frame0 + len(self.g)
        if len(z) == 0:
            return np.zeros(0)
        if n_known == 0:
            raise InputShapeError("LPC synthesis: no mel frames yet")
        fr = frame_of(len(z), self.pos, self.hop, n_known)
        out = np.empty(len(z))
        cuts = np.concatenate([[0], np.flatnonzero(np.diff(fr)) + 1, [len(z)]])
        p = self.order
        for lo, hi in zip(cuts[:-1], cuts[1:]):
            t = fr[lo] - self.frame0
            den = self.a[t]
            zi = lfiltic([1.0], den, self.past[::-1])
            y, _ = lfilter([1.0], den, z[lo:hi] * (self.g[t] / EXCITATION_SCALE), zi=zi)
            out[lo:hi] = y
            self.past = np.concatenate([self.past, y])[-p:]
        self.pos += len(z)
        drop = max(0, int(fr[-1]) - self.frame0 - 1)  # keep the current frame and the one before
        self.a, self.g, self.frame0 = self.a[drop:], self.g[drop:], self.frame0 + drop
        return out


def synthesize(z: np.ndarray, mel: np.ndarray, order: int, hop: int) -> np.ndarray:
    """Whole-signal inverse of :func:`excitation` (with the coefficients of ``mel``)."""
    syn = LpcSynthesis(order, hop)
    syn.add_mel(np.asarray(mel))
    return syn.push(z)
