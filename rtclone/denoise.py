"""LogMMSE noise reduction of a reference recording (Ephraim & Malah, 1985).

For each STFT bin the clean amplitude is estimated by the minimum mean-square error estimator of
the *log* amplitude, given the a posteriori SNR ``gamma = |X|^2 / lambda_d`` and the a priori SNR
``xi`` (decision-directed: a blend of the previous frame's estimate and ``max(gamma - 1, 0)``)::

    G(xi, gamma) = xi / (1 + xi) * exp(0.5 * E1(v)),   v = xi / (1 + xi) * gamma

where ``E1`` is the exponential integral. The noise power ``lambda_d`` starts as the mean power of
the quietest frames and is updated slowly in frames a likelihood-ratio test calls noise-only.
"""

from __future__ import annotations

import numpy as np
import scipy.signal
import scipy.special

from .audio import SAMPLE_RATE, ensure_wav

_DD_ALPHA = 0.98  # decision-directed smoothing of the a priori SNR
_XI_MIN = 10.0 ** (-25.0 / 10.0)  # floor of the a priori SNR (-25 dB)
_GAMMA_MAX = 40.0  # cap of the a posteriori SNR
_NOISE_MU = 0.98  # smoothing of the noise update in noise-only frames
_VAD_ETA = 0.15  # likelihood-ratio threshold of the noise-only decision


def _initial_noise(power: np.ndarray, quiet_fraction: float) -> np.ndarray:
    """Mean power spectrum of the quietest frames. power: (F, T) -> (F,)."""
    energy = power.sum(axis=0)  # (T,)
    n_quiet = max(1, min(power.shape[1], int(round(quiet_fraction * power.shape[1]))))
    quiet = np.argsort(energy, kind="stable")[:n_quiet]
    return np.maximum(power[:, quiet].mean(axis=1), 1e-12)


def logmmse_gains(power: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """Per-bin LogMMSE gains for a power spectrogram (F, T) given an initial noise PSD (F,)."""
    noise = noise.copy()
    gains = np.empty_like(power)  # (F, T)
    prev_clean = None  # |X_hat|^2 / lambda_d of the previous frame
    for t in range(power.shape[1]):
        gamma = np.minimum(power[:, t] / noise, _GAMMA_MAX)
        ml = np.maximum(gamma - 1.0, 0.0)
        xi = _DD_ALPHA * (1.0 if prev_clean is None else prev_clean) + (1.0 - _DD_ALPHA) * ml
        xi = np.maximum(xi, _XI_MIN)
        a = xi / (1.0 + xi)
        v = np.maximum(a * gamma, 1e-10)
        gain = a * np.exp(0.5 * scipy.special.exp1(v))
        gains[:, t] = gain
        prev_clean = gain**2 * gamma
        # Noise-only frame (mean log-likelihood ratio below eta): let the noise estimate follow.
        if np.mean(gamma * a - np.log1p(xi)) < _VAD_ETA:
            noise = _NOISE_MU * noise + (1.0 - _NOISE_MU) * np.maximum(power[:, t], 1e-12)
    return gains


def denoise(
    wav: np.ndarray, sr: int = SAMPLE_RATE, frame_ms: float = 20.0, quiet_fraction: float = 0.1
) -> np.ndarray:
    """LogMMSE noise reduction; returns float32 audio of the same length and rate as ``wav``.

    The noise spectrum is estimated from the quietest ``quiet_fraction`` of the ``frame_ms``
    frames (Hann window, 50 % overlap), so the recording should contain some pauses; stationary
    noise (fans, hiss, hum) is reduced best.
    """
    wav = ensure_wav(wav, sr, target_sr=sr)  # validates; keeps the rate
    nperseg = max(16, int(round(sr * frame_ms / 1000.0)) // 2 * 2)
    if wav.size < nperseg:
        return wav
    _, _, spec = scipy.signal.stft(wav.astype(np.float64), fs=sr, window="hann", nperseg=nperseg,
                                   noverlap=nperseg // 2, boundary="even", padded=True)  # (F, T)  # fmt: skip
    power = np.abs(spec) ** 2
    gains = logmmse_gains(power, _initial_noise(power, quiet_fraction))
    _, out = scipy.signal.istft(spec * gains, fs=sr, window="hann", nperseg=nperseg, noverlap=nperseg // 2,
                                boundary=True)  # fmt: skip
    return out[: wav.size].astype(np.float32)
