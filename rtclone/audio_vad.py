"""Voice-activity based trimming of long silences (the SV2TTS reference rule).

webrtcvad labels 30 ms frames as voiced or not; the labels are smoothed by a centred moving
average of 8 frames and rounded (a frame counts as voiced when more than half of its neighbourhood
is), and the voiced regions are dilated by ``max_silence + 1`` frames so that pauses of up to
``max_silence`` frames (~0.2 s) inside speech are kept. Everything else is dropped.

This module imports nothing from the rest of rtclone; ``rtclone.audio`` re-exports
``trim_long_silences`` and ``pcm16_bytes``.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import binary_dilation

VAD_SAMPLE_RATES = (8000, 16000, 32000, 48000)  # the rates webrtcvad accepts
_INT16_MAX = 2**15 - 1


def pcm16_bytes(wav: np.ndarray) -> bytes:
    """Float audio -> little-endian int16 PCM bytes (clipped to [-1, 1], x 32767, rounded; NaN -> 0)."""
    wav = np.clip(np.nan_to_num(np.asarray(wav, dtype=np.float32)), -1.0, 1.0)
    return np.round(wav * _INT16_MAX).astype("<i2").tobytes()


def voice_flags(wav: np.ndarray, sr: int = 16000, vad_window_ms: int = 30, mode: int = 3) -> np.ndarray:
    """Raw webrtcvad decision for each whole ``vad_window_ms`` frame of ``wav``.

    Returns a bool array of ``len(wav) // frame`` flags (a trailing partial frame is ignored).
    """
    import webrtcvad  # imported lazily: the C extension is only needed here

    if sr not in VAD_SAMPLE_RATES:
        raise ValueError(f"webrtcvad needs one of {VAD_SAMPLE_RATES} Hz, got {sr}")
    if vad_window_ms not in (10, 20, 30):
        raise ValueError(f"vad_window_ms must be 10, 20 or 30, got {vad_window_ms}")
    frame = vad_window_ms * sr // 1000
    n_frames = len(wav) // frame
    pcm = pcm16_bytes(np.asarray(wav[: n_frames * frame], dtype=np.float32))
    vad = webrtcvad.Vad(mode)
    step = 2 * frame  # bytes per frame
    return np.array([vad.is_speech(pcm[i * step : (i + 1) * step], sr) for i in range(n_frames)], dtype=bool)


def speech_mask(flags: np.ndarray, moving_average_width: int = 8, max_silence_length: int = 6) -> np.ndarray:
    """Smooth per-frame VAD flags into the keep-mask (moving average, round, dilate)."""
    w = moving_average_width
    # Centred window: frame i averages flags[i - (w-1)//2 : i + w//2 + 1], zeros beyond the edges.
    padded = np.concatenate([np.zeros((w - 1) // 2), flags.astype(np.float64), np.zeros(w // 2)])
    csum = np.concatenate([[0.0], np.cumsum(padded)])
    average = (csum[w:] - csum[:-w]) / w  # (n_frames,)
    voiced = np.round(average).astype(bool)  # round-half-to-even: exactly half voiced -> silent
    if not voiced.any():
        return voiced
    return binary_dilation(voiced, np.ones(max_silence_length + 1, dtype=bool))


def trim_long_silences(
    wav: np.ndarray,
    sr: int = 16000,
    vad_window_ms: int = 30,
    vad_moving_average_width: int = 8,
    vad_max_silence_length: int = 6,
    mode: int = 3,
) -> np.ndarray:
    """Drop silences longer than ``vad_max_silence_length`` VAD frames (pauses up to ~0.2 s stay).

    ``wav`` is float mono in [-1, 1] at ``sr`` (8, 16, 32 or 48 kHz). The result is at most
    ``len(wav)`` samples (the tail is first cut to a whole number of frames) and may be empty when
    nothing is voiced; callers decide whether that is an error.
    """
    wav = np.asarray(wav, dtype=np.float32)
    frame = vad_window_ms * sr // 1000
    flags = voice_flags(wav, sr, vad_window_ms, mode)  # (n_frames,)
    mask = speech_mask(flags, vad_moving_average_width, vad_max_silence_length)
    return wav[: len(flags) * frame][np.repeat(mask, frame)]
