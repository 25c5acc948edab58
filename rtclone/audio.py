"""Audio front-end: loading, validation, resampling, volume, VAD trimming, mels, mu-law, emphasis.

Everything inside the engine is mono float32 at ``SAMPLE_RATE`` (16 kHz). Two mel features:

* ``encoder_mel``: the speaker encoder's 40-channel *power* mel (no log), n_fft 400, hop 160.
* ``synth_mel``: the synthesizer/vocoder 80-channel mel of RTVC (pre-emphasis 0.97, n_fft 800,
  hop 200, fmin 55, fmax 7600, dB - 20, symmetric normalisation to [-4, 4]) and its inverse.

Bad input raises the typed errors of ``rtclone.errors``. LogMMSE noise reduction lives in
``rtclone.denoise`` (``rtclone.audio.denoise`` resolves to it lazily).
"""

from __future__ import annotations

import functools
import io
import os
import re
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np
import scipy.fft
import scipy.signal
import torch

from .audio_vad import pcm16_bytes, trim_long_silences
from .errors import AudioDecodeError, AudioError, SampleRateError, SilentAudioError

if TYPE_CHECKING:
    from .denoise import denoise

__all__ = [
    "SAMPLE_RATE", "MIN_SAMPLE_RATE", "MAX_SAMPLE_RATE", "load_audio", "ensure_wav", "resample",
    "normalize_volume", "trim_long_silences", "preprocess_wav", "encoder_mel", "synth_mel",
    "synth_mel_to_linear", "griffin_lim", "griffin_lim_iterate", "pre_emphasis", "de_emphasis", "mulaw_encode",
    "mulaw_decode", "label_to_float", "float_to_label", "mulaw_compress", "mulaw_expand", "denoise",
    "save_wav", "pcm16_bytes", "dbfs",
]

# ---- constants (SV2TTS / RTVC) -----------------------------------------------------------------
SAMPLE_RATE = 16000
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 8000, 48000  # accepted input rates
AUDIO_NORM_TARGET_DBFS = -30.0

# Speaker encoder mel.
ENC_N_FFT, ENC_HOP, ENC_N_MELS = 400, 160, 40  # 25 ms window, 10 ms hop

# Synthesizer / vocoder mel.
SYN_N_FFT, SYN_HOP, SYN_WIN, SYN_N_MELS = 800, 200, 800, 80
SYN_FMIN, SYN_FMAX = 55.0, 7600.0
PREEMPHASIS = 0.97
MAX_ABS_VALUE = 4.0  # symmetric mels in [-4, 4]
MIN_LEVEL_DB = -100.0
REF_LEVEL_DB = 20.0
# Griffin-Lim's magnitude exponent. RTVC sharpens with 1.5; measured on the shipped step-8 800
# synthesizer (rtclone eval clone --sentences 6, 12 voices), 1.0 gives clones of higher similarity
# (seen 0.808 -> 0.864, held out 0.830 -> 0.867) and lower WER (seen 0.323 -> 0.290), and copy
# synthesis of ground-truth mels WER 0.147 -> 0.105 (ground truth 0.083): see benchmarks/README.md.
GRIFFIN_LIM_POWER = 1.0
# Formant enhancement of the mel before Griffin-Lim (``formant_lifter``; 0 leaves the mel as it is).
# Session 20 chose 0.3 for the r = 4 step-20 000 synthesizer (test set: seen errors 2 916 -> 2 837, within
# noise, for a seen similarity of 0.873 instead of 0.882). Session 24, with the shipped r = 2 step 23 000 and
# its int8 decoder, on the same 80 test sentences: 0.3 -> 0 leaves the seen errors at 2 592 (-176 to +167)
# and raises similarity 0.875 / 0.879 -> 0.889 / 0.888 and identification per utterance 72 % / 46 % ->
# 76 % / 55 %, per voice 85 % -> 90 % seen (dev set: 76 / 43 -> 80 / 59 %, 85 / 50 -> 100 / 75 %); on
# ground-truth mels the lifter alone cost Griffin-Lim's copies 77 % -> 69 % identified: README, model card.
GRIFFIN_LIM_FORMANTS = 0.0



# ---- loading and validation --------------------------------------------------------------------
def _check_rate(sr: int) -> int:
    if not isinstance(sr, (int, np.integer)) or isinstance(sr, bool):
        raise SampleRateError(f"sample rate must be an integer, got {sr!r}")
    if not MIN_SAMPLE_RATE <= int(sr) <= MAX_SAMPLE_RATE:
        raise SampleRateError(
            f"sample rate {int(sr)} Hz is outside the supported {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz range"
        )
    return int(sr)


def _read_source(source: str | Path | bytes | BinaryIO) -> tuple[bytes | None, str | None]:
    """Return (bytes, None) for in-memory sources or (None, path) for files; errors are typed."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), None
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise AudioDecodeError(f"{path}: " + ("a folder, not an audio file" if path.is_dir() else "no such audio file"))
        if path.stat().st_size == 0:
            raise AudioDecodeError(f"{path}: the file is empty")
        return None, str(path)
    if hasattr(source, "read"):
        data = source.read()
        if not isinstance(data, (bytes, bytearray)):
            raise AudioDecodeError("the file object must be opened in binary mode")
        return bytes(data), None
    raise AudioDecodeError(f"cannot read audio from a {type(source).__name__}")


def _decode_soundfile(data: bytes | None, path: str | None) -> tuple[np.ndarray, int]:
    import soundfile as sf

    wav, sr = sf.read(path if path is not None else io.BytesIO(data), dtype="float32", always_2d=True)
    return wav, sr  # (N, channels)


def _decode_ffmpeg(data: bytes | None, path: str | None) -> tuple[np.ndarray, int]:
    """Decode anything ffmpeg reads to mono float32 at the source rate (parsed from its log)."""
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-i", path or "pipe:0", "-map", "0:a:0", "-ac", "1",
           "-f", "f32le", "-acodec", "pcm_f32le", "pipe:1"]  # fmt: skip
    try:
        proc = subprocess.run(cmd, input=data, capture_output=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise AudioDecodeError(f"ffmpeg could not run: {e}") from e
    log = proc.stderr.decode("utf-8", "replace")
    m = re.search(r"Stream #\d+:\d+.*?Audio:.*?(\d+) Hz", log)
    if proc.returncode != 0 or m is None:
        last = log.strip().splitlines()[-1] if log.strip() else "no output"
        raise AudioDecodeError(f"ffmpeg could not decode it: {last}")
    return np.frombuffer(proc.stdout, dtype="<f4").reshape(-1, 1), int(m.group(1))


def load_audio(source: str | Path | bytes | BinaryIO, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Decode wav/flac/ogg/mp3 (a path, bytes or a binary file object) to mono float32 at ``sr``.

    Decoding uses soundfile (libsndfile) and falls back to ffmpeg. Raises ``AudioDecodeError``
    for missing, empty, corrupt, truncated or unknown data and ``SampleRateError`` when the
    source rate is outside 8-48 kHz.
    """
    data, path = _read_source(source)
    name = path or "audio data"
    if data is not None and len(data) == 0:
        raise AudioDecodeError("the audio data is empty (0 bytes)")
    try:
        wav, source_sr = _decode_soundfile(data, path)
    except Exception as sf_error:  # noqa: BLE001 - libsndfile raises several types; ffmpeg may still read it
        try:
            wav, source_sr = _decode_ffmpeg(data, path)
        except AudioDecodeError as ff_error:
            raise AudioDecodeError(
                f"{name}: corrupt, truncated or unknown audio format (soundfile: {sf_error}; {ff_error})"
            ) from sf_error
    if wav.shape[0] == 0:
        raise AudioDecodeError(f"{name}: the audio holds no samples")
    return ensure_wav(wav.mean(axis=1) if wav.shape[1] > 1 else wav[:, 0], source_sr, target_sr=sr)


def _to_float32(wav: np.ndarray) -> np.ndarray:
    """Integer PCM -> float in [-1, 1]; floats are cast (and scaled down if their peak is over 1)."""
    kind = wav.dtype.kind
    if kind == "u":  # unsigned PCM is offset binary (uint8 wav)
        half = 2.0 ** (8 * wav.dtype.itemsize - 1)
        return ((wav.astype(np.float64) - half) / half).astype(np.float32)
    if kind == "i":
        return (wav.astype(np.float64) / 2.0 ** (8 * wav.dtype.itemsize - 1)).astype(np.float32)
    if kind == "f":
        out = wav.astype(np.float32)
        if not np.isfinite(out).all():
            bad = int((~np.isfinite(out)).sum())
            raise AudioError(f"audio has {bad} NaN/inf samples")
        peak = float(np.abs(out).max())
        return out / peak if peak > 1.0 else out
    raise AudioError(f"audio samples must be integer or real floats, got dtype {wav.dtype}")


def ensure_wav(wav: np.ndarray | torch.Tensor, sr: int, target_sr: int = SAMPLE_RATE) -> np.ndarray:
    """Validate an in-memory signal and return it as mono float32 at ``target_sr``.

    Accepts int16/int32/uint8/float16/float32/float64, shapes (N,), (N, C) or (C, N) with up to 8
    channels (folded to mono by averaging). Raises ``AudioError`` for empty, non-finite, non-numeric
    or badly shaped input and ``SampleRateError`` for rates outside 8-48 kHz.
    """
    if isinstance(wav, torch.Tensor):
        wav = wav.detach().cpu()
        wav = (wav.float() if wav.is_floating_point() and wav.dtype != torch.float64 else wav).numpy()
    try:
        wav = np.asarray(wav)
    except Exception as e:  # noqa: BLE001 - ragged lists etc.
        raise AudioError(f"audio is not an array of samples: {e}") from e
    if wav.dtype.kind not in "uif":
        raise AudioError(f"audio samples must be integer or real floats, got dtype {wav.dtype}")
    if wav.size == 0:
        raise AudioError(f"audio is empty (0 samples, shape {wav.shape})")
    if wav.ndim == 2:
        if min(wav.shape) > 8:
            raise AudioError(f"audio of shape {wav.shape} is neither (N, channels) nor (channels, N)")
        wav = _to_float32(wav).mean(axis=int(np.argmin(wav.shape)), dtype=np.float32)
    elif wav.ndim == 1:
        wav = _to_float32(wav)
    else:
        raise AudioError(f"audio must be 1-D (mono) or 2-D (multi-channel), got shape {wav.shape}")
    sr = _check_rate(sr)
    return resample(wav, sr, target_sr)


def resample(wav: np.ndarray, orig_sr: int, target_sr: int = SAMPLE_RATE) -> np.ndarray:
    """Resample float32 mono audio (soxr, librosa's default "soxr_hq" quality)."""
    wav = np.asarray(wav, dtype=np.float32)
    if int(orig_sr) == int(target_sr):
        return wav
    if orig_sr <= 0 or target_sr <= 0:
        raise SampleRateError(f"sample rates must be positive, got {orig_sr} -> {target_sr}")
    import soxr  # librosa's own "soxr_hq" backend, without librosa's import cost (numba compiles for seconds)

    y = np.asarray(soxr.resample(wav, int(orig_sr), int(target_sr), quality="HQ"), dtype=np.float32)
    n = int(np.ceil(len(wav) * int(target_sr) / int(orig_sr)))  # librosa's output length (zero-padded or cut)
    return np.pad(y, (0, n - len(y))) if len(y) < n else y[:n]


# ---- level and silence -------------------------------------------------------------------------
def dbfs(wav: np.ndarray) -> float:
    """RMS level in dB relative to full scale 1.0 (a full-scale sine is -3.01 dBFS; silence -inf)."""
    wav = np.asarray(wav, dtype=np.float64)
    ms = float(np.mean(wav**2)) if wav.size else 0.0
    return 10.0 * np.log10(ms) if ms > 0 else float("-inf")


def normalize_volume(
    wav: np.ndarray,
    target_dBFS: float = AUDIO_NORM_TARGET_DBFS,
    increase_only: bool = False,
    decrease_only: bool = False,
) -> np.ndarray:
    """Scale ``wav`` to an RMS of ``target_dBFS`` (optionally only ever up or only ever down).

    Silence (RMS 0) is returned unchanged.
    """
    if increase_only and decrease_only:
        raise ValueError("increase_only and decrease_only are mutually exclusive")
    wav = np.asarray(wav, dtype=np.float32)
    level = dbfs(wav)
    if not np.isfinite(level):
        return wav
    change = target_dBFS - level
    if (change < 0 and increase_only) or (change > 0 and decrease_only):
        return wav
    return (wav * np.float32(10.0 ** (change / 20.0))).astype(np.float32, copy=False)


def preprocess_wav(
    source: str | Path | bytes | BinaryIO | np.ndarray | torch.Tensor,
    source_sr: int | None = None,
    *,
    normalize: bool = True,
    trim_silence: bool = True,
) -> np.ndarray:
    """The SV2TTS reference preprocessing: decode/validate -> 16 kHz -> -30 dBFS (raise only) -> VAD trim.

    ``source`` is a file (path, bytes, binary file object) or an in-memory signal at ``source_sr``
    (16 kHz when omitted). Raises ``SilentAudioError`` when nothing voiced remains.
    """
    if isinstance(source, (np.ndarray, torch.Tensor, list, tuple)):
        wav = ensure_wav(source, SAMPLE_RATE if source_sr is None else source_sr)
    else:
        wav = load_audio(source)
    if normalize:
        wav = normalize_volume(wav, AUDIO_NORM_TARGET_DBFS, increase_only=True)
    if trim_silence:
        wav = trim_long_silences(wav, SAMPLE_RATE)
        if wav.size == 0:
            raise SilentAudioError("no speech found in the audio (all silence after voice-activity detection)")
    elif not np.any(wav):
        raise SilentAudioError("the audio is all zeros")
    return wav


# ---- spectral features -------------------------------------------------------------------------
@functools.lru_cache(maxsize=8)
def _hann(n: int) -> np.ndarray:
    return scipy.signal.get_window("hann", n, fftbins=True)  # periodic, as librosa uses


# Slaney's mel scale (librosa's default, htk=False): linear below 1 kHz, logarithmic above.
_MEL_HZ_PER_MEL = 200.0 / 3.0
_MEL_BREAK_HZ = 1000.0
_MEL_BREAK = _MEL_BREAK_HZ / _MEL_HZ_PER_MEL  # 15 mels
_MEL_LOG_STEP = np.log(6.4) / 27.0  # mels per natural-log unit of frequency above the break


def hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    """Slaney mel of frequency ``f`` in Hz."""
    f = np.asarray(f, dtype=np.float64)
    above = _MEL_BREAK + np.log(np.maximum(f, _MEL_BREAK_HZ) / _MEL_BREAK_HZ) / _MEL_LOG_STEP
    return np.where(f >= _MEL_BREAK_HZ, above, f / _MEL_HZ_PER_MEL)


def mel_to_hz(m: np.ndarray | float) -> np.ndarray:
    """Inverse of :func:`hz_to_mel`."""
    m = np.asarray(m, dtype=np.float64)
    above = _MEL_BREAK_HZ * np.exp(_MEL_LOG_STEP * (np.maximum(m, _MEL_BREAK) - _MEL_BREAK))
    return np.where(m >= _MEL_BREAK, above, m * _MEL_HZ_PER_MEL)


@functools.lru_cache(maxsize=8)
def _mel_basis(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None) -> np.ndarray:
    """Triangular Slaney-normalised (area 1) mel filterbank (n_mels, 1 + n_fft/2), float32 — the
    same matrix as ``librosa.filters.mel`` (tested), computed here in numpy (librosa's import
    costs seconds of numba compilation in every process)."""
    fmax = sr / 2.0 if fmax is None else float(fmax)
    bins = np.linspace(0.0, sr / 2.0, 1 + n_fft // 2)  # (F,) centre frequency of each FFT bin
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))  # (n_mels + 2,)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins - lo) / (mid - lo)  # (n_mels, F)
    falling = (hi - bins) / (hi - mid)
    fb = (np.maximum(0.0, np.minimum(rising, falling)) * (2.0 / (hi - lo))).astype(np.float32)
    fb.setflags(write=False)
    return fb


@functools.lru_cache(maxsize=8)
def _sparse_mel_basis(sr: int, n_fft: int, n_mels: int) -> Any:
    # The filterbank as a sparse matrix: each triangle spans a few bins, and a sparse
    # product avoids BLAS thread start-up, which dominates a dense (T, 201) @ (201, 40) here.
    import scipy.sparse

    return scipy.sparse.csr_matrix(_mel_basis(sr, n_fft, n_mels, 0.0, None))  # (n_mels, 1 + n_fft/2)


def _frames(wav: np.ndarray, n_fft: int, hop: int, dtype: type) -> np.ndarray:
    """Centred, zero-padded framing (librosa >= 0.10): a read-only view (T, n_fft), T = 1 + N // hop."""
    if wav.ndim != 1 or wav.size == 0:
        raise AudioError(f"expected a non-empty 1-D signal, got shape {wav.shape}")
    padded = np.pad(wav.astype(dtype, copy=False), n_fft // 2)
    return np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop]  # (T, n_fft)


def _stft_frames(wav: np.ndarray, n_fft: int, hop: int, dtype: type) -> np.ndarray:
    """Centred STFT with a periodic Hann window -> complex (T, 1 + n_fft/2)."""
    return scipy.fft.rfft(_frames(wav, n_fft, hop, dtype) * _hann(n_fft).astype(dtype), axis=-1)


_ENC_BLOCK = 256  # frames per FFT block: keeps the working set in cache (2x faster on 30 s than one block)


def encoder_mel(wav: np.ndarray) -> np.ndarray:
    """Speaker-encoder features: (T, 40) float32 *power* mel (no log) of 16 kHz audio, T = 1 + N // 160.

    Equal to ``librosa.feature.melspectrogram(y=wav, sr=16000, n_fft=400, hop_length=160,
    n_mels=40).T`` (centred frames, Hann window, power 2, Slaney mel filters).
    """
    frames = _frames(np.asarray(wav, dtype=np.float32), ENC_N_FFT, ENC_HOP, np.float32)  # (T, 400)
    window = _hann(ENC_N_FFT).astype(np.float32)
    fb = _sparse_mel_basis(SAMPLE_RATE, ENC_N_FFT, ENC_N_MELS)  # (40, 201) sparse
    out = np.empty((frames.shape[0], ENC_N_MELS), dtype=np.float32)  # (T, 40)
    for start in range(0, frames.shape[0], _ENC_BLOCK):
        spec = scipy.fft.rfft(frames[start : start + _ENC_BLOCK] * window, axis=-1)  # (B, 201)
        power = spec.real**2 + spec.imag**2
        out[start : start + _ENC_BLOCK] = (fb @ power.T).T
    return out


def _amp_to_db(x: np.ndarray) -> np.ndarray:
    return 20.0 * np.log10(np.maximum(10.0 ** (MIN_LEVEL_DB / 20.0), x))


def _normalize_db(s_db: np.ndarray) -> np.ndarray:
    scaled = 2.0 * MAX_ABS_VALUE * (s_db - MIN_LEVEL_DB) / (-MIN_LEVEL_DB) - MAX_ABS_VALUE
    return np.clip(scaled, -MAX_ABS_VALUE, MAX_ABS_VALUE)


def _denormalize_db(mel: np.ndarray) -> np.ndarray:
    mel = np.clip(mel, -MAX_ABS_VALUE, MAX_ABS_VALUE)
    return (mel + MAX_ABS_VALUE) * (-MIN_LEVEL_DB) / (2.0 * MAX_ABS_VALUE) + MIN_LEVEL_DB


def _synth_basis() -> np.ndarray:
    return _mel_basis(SAMPLE_RATE, SYN_N_FFT, SYN_N_MELS, SYN_FMIN, SYN_FMAX)  # (80, 401)


def synth_mel(wav: np.ndarray) -> np.ndarray:
    """Synthesizer/vocoder features: (80, T) float32 normalised log mel in [-4, 4], T = 1 + N // 200.

    RTVC's recipe: pre-emphasis 0.97, |STFT| (n_fft 800, hop 200, Hann 800, centred), Slaney mel
    filters 55-7600 Hz, 20*log10(max(1e-5, x)) - 20 dB, symmetric normalisation with min -100 dB.
    """
    wav = np.asarray(wav, dtype=np.float64)
    spec = _stft_frames(pre_emphasis(wav).astype(np.float64), SYN_N_FFT, SYN_HOP, np.float64)  # (T, 401)
    mel = _synth_basis() @ np.abs(spec).T  # (80, T)
    return _normalize_db(_amp_to_db(mel) - REF_LEVEL_DB).astype(np.float32)


@functools.lru_cache(maxsize=1)
def _synth_pinv() -> np.ndarray:
    inv = np.linalg.pinv(_synth_basis().astype(np.float64))  # (401, 80)
    inv.setflags(write=False)
    return inv


@functools.lru_cache(maxsize=8)
def formant_lifter(beta: float, n: int = SYN_N_MELS) -> np.ndarray:
    """(n, n) map of a dB mel frame that scales its cepstrum (orthonormal DCT-II over the mel bands)
    by ``1 + beta`` from the second coefficient on: the envelope's peaks and valleys move apart by
    that factor around the frame's mean level and its tilt (coefficients 0 and 1) stays. This is the
    classic post-filter against the over-smoothed spectra a trained predictor makes (statistical
    parametric synthesis enhances formants this way); on a ground-truth mel it exaggerates."""
    dct = scipy.fft.dct(np.eye(n), type=2, norm="ortho", axis=0)  # dct @ x is x's cepstrum
    gain = np.full(n, 1.0 + float(beta))
    gain[:2] = 1.0
    lifter = dct.T @ (gain[:, None] * dct)
    lifter.setflags(write=False)
    return lifter


def synth_mel_to_linear(mel: np.ndarray, formants: float = 0.0) -> np.ndarray:
    """Inverse of ``synth_mel`` up to the mel projection: (80, T) -> (401, T) linear magnitude.

    Denormalises, adds back the reference level, converts dB to amplitude and maps mel to linear
    with the filterbank's pseudo-inverse (floored at 1e-10). ``formants`` > 0 first sharpens each
    frame's envelope (:func:`formant_lifter`) and restores the frame's mel energy.
    """
    mel = np.asarray(mel, dtype=np.float64)
    if mel.ndim != 2 or mel.shape[0] != SYN_N_MELS:
        raise AudioError(f"expected a ({SYN_N_MELS}, T) mel, got shape {mel.shape}")
    db = _denormalize_db(mel)
    if formants:
        sharp = formant_lifter(float(formants)) @ db
        db = sharp + 10.0 * np.log10(np.sum(10.0 ** (db / 10.0), 0) / np.sum(10.0 ** (sharp / 10.0), 0))  # same mel power
    amp = 10.0 ** ((db + REF_LEVEL_DB) / 20.0)  # (80, T)
    return np.maximum(1e-10, _synth_pinv() @ amp)  # (401, T)


def griffin_lim(mel: np.ndarray, n_iter: int = 32, power: float = GRIFFIN_LIM_POWER, seed: int = 0,
                formants: float = 0.0, inverter: Any = None) -> np.ndarray:  # fmt: skip
    """Baseline vocoder: synthesizer mel (80, T) -> float32 16 kHz waveform of T * 200 samples.

    Linear magnitude (``synth_mel_to_linear``, with its ``formants`` enhancement, none by default here;
    the engine's ``GriffinLimVocoder`` applies ``GRIFFIN_LIM_FORMANTS``) raised to ``power``
    (> 1 sharpens, as RTVC's 1.5), fast Griffin-Lim (momentum 0.99, seeded random initial phase),
    then de-emphasis. ``inverter`` (a :class:`rtclone.mel_inverter.MelInverter`) replaces the
    pseudo-inverse (and ``formants``) with its learned magnitudes.
    """
    lin = synth_mel_to_linear(mel, formants) if inverter is None else inverter.invert(mel)
    mag = (lin.T ** power).astype(np.float32)  # (T, 401); float32 halves the time
    length = (mag.shape[0] - 1) * SYN_HOP
    rng = np.random.default_rng(seed)
    phase = np.exp(2j * np.pi * rng.random(mag.shape)).astype(np.complex64)  # (T, 401)
    wav, _ = griffin_lim_iterate(mag, phase, n_iter, length)
    wav = np.pad(wav.astype(np.float64), (0, SYN_HOP))  # T * hop samples, the length a vocoder gives for T frames
    return de_emphasis(wav).astype(np.float32)


def griffin_lim_iterate(mag: np.ndarray, phase: np.ndarray, n_iter: int, length: int,
                        known: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Fast Griffin-Lim (Perraudin et al. 2013, momentum 0.99) on linear magnitudes ``mag`` (T, 401) from
    unit phases ``phase`` (T, 401), for a signal of ``length`` samples (frames centred every hop)
    whose first ``len(known)`` samples are held fixed to ``known`` inside every iteration.

    Returns the float32 signal (its known part equals ``known``) and the final phases.
    """
    n_known = 0 if known is None else len(known)

    def signal(ph: np.ndarray) -> np.ndarray:
        x = _istft(mag * ph, SYN_N_FFT, SYN_HOP, length)
        if n_known:
            x[:n_known] = known
        return x

    prev = np.zeros_like(phase)
    alpha = np.float32(0.99)  # extrapolate the consistent projection
    for _ in range(n_iter if length else 0):  # a 1-frame mel has no samples to iterate on
        proj = _stft_frames(signal(phase), SYN_N_FFT, SYN_HOP, np.float32)
        step = proj + alpha * (proj - prev)
        prev = proj
        phase = step / np.maximum(np.abs(step), np.float32(1e-16))
    return (signal(phase) if length else np.zeros(0, np.float32)), phase


def _istft(spec: np.ndarray, n_fft: int, hop: int, length: int) -> np.ndarray:
    """Inverse of ``_stft_frames`` (centred, periodic Hann): complex (T, 1 + n_fft/2) → ``length`` samples.

    Windowed overlap-add divided by the summed squared window (the least-squares inverse)."""
    if n_fft % hop:
        raise AudioError(f"n_fft {n_fft} must be a multiple of hop {hop}")
    T, k = spec.shape[0], n_fft // hop
    win = _hann(n_fft).astype(np.float32 if spec.dtype == np.complex64 else np.float64)
    frames = (scipy.fft.irfft(spec, n=n_fft, axis=-1) * win).reshape(T, k, hop)  # (T, k, hop)
    out = np.zeros((T + k - 1, hop), dtype=frames.dtype)
    norm = np.zeros((T + k - 1, hop), dtype=frames.dtype)
    wsq = (win**2).reshape(k, hop)
    for j in range(k):  # frame t's j-th hop-long piece lands in output block t + j
        out[j : j + T] += frames[:, j]
        norm[j : j + T] += wsq[j]
    y = (out / np.where(norm > 1e-11, norm, 1.0)).reshape(-1)
    return y[n_fft // 2 : n_fft // 2 + length]


# ---- emphasis and mu-law -----------------------------------------------------------------------
def pre_emphasis(wav: np.ndarray, k: float = PREEMPHASIS) -> np.ndarray:
    """y[n] = x[n] - k x[n-1] (y[0] = x[0])."""
    wav = np.asarray(wav)
    out = wav.astype(np.float64, copy=True)
    out[1:] -= k * wav[:-1]
    return out.astype(wav.dtype if wav.dtype.kind == "f" else np.float32)


def de_emphasis(wav: np.ndarray, k: float = PREEMPHASIS) -> np.ndarray:
    """Inverse of ``pre_emphasis``: y[n] = x[n] + k y[n-1]."""
    wav = np.asarray(wav)
    out = scipy.signal.lfilter([1.0], [1.0, -k], wav.astype(np.float64))
    return out.astype(wav.dtype if wav.dtype.kind == "f" else np.float32)


def _xp(x: Any) -> Any:
    return torch if isinstance(x, torch.Tensor) else np


def mulaw_compress(x: np.ndarray | torch.Tensor, mu: float) -> np.ndarray | torch.Tensor:
    """sign(x) * ln(1 + mu |x|) / ln(1 + mu), float -> float in [-1, 1]."""
    xp = _xp(x)
    x = x if xp is torch else np.asarray(x, dtype=np.float64)
    return xp.sign(x) * xp.log1p(mu * xp.abs(x)) / float(np.log1p(mu))


def mulaw_expand(y: np.ndarray | torch.Tensor, mu: float) -> np.ndarray | torch.Tensor:
    """Inverse of ``mulaw_compress``: sign(y) * ((1 + mu)^|y| - 1) / mu."""
    xp = _xp(y)
    y = y if xp is torch else np.asarray(y, dtype=np.float64)
    return xp.sign(y) * xp.expm1(xp.abs(y) * float(np.log1p(mu))) / mu


def label_to_float(labels: np.ndarray | torch.Tensor, bits: int) -> np.ndarray | torch.Tensor:
    """Labels 0 .. 2**bits - 1 -> floats in [-1, 1] (linear)."""
    if isinstance(labels, torch.Tensor):
        return 2.0 * labels.float() / (2**bits - 1) - 1.0
    return (2.0 * np.asarray(labels, dtype=np.float64) / (2**bits - 1) - 1.0).astype(np.float32)


def float_to_label(x: np.ndarray | torch.Tensor, bits: int) -> np.ndarray | torch.Tensor:
    """Floats in [-1, 1] -> real-valued labels in [0, 2**bits - 1] (linear, clipped; not rounded)."""
    top = 2**bits - 1
    if isinstance(x, torch.Tensor):
        return ((x + 1.0) * top / 2.0).clamp(0, top)
    return np.clip((np.asarray(x, dtype=np.float64) + 1.0) * top / 2.0, 0, top)


def mulaw_encode(x: np.ndarray | torch.Tensor, bits: int = 9) -> np.ndarray | torch.Tensor:
    """Float audio in [-1, 1] -> int64 mu-law labels in [0, 2**bits - 1] (mu = 2**bits - 1)."""
    mu = 2**bits - 1
    if isinstance(x, torch.Tensor):
        fx = mulaw_compress(x.clamp(-1.0, 1.0), mu)
        return torch.floor((fx + 1.0) / 2.0 * mu + 0.5).long()
    fx = mulaw_compress(np.clip(np.asarray(x, dtype=np.float64), -1.0, 1.0), mu)
    return np.floor((fx + 1.0) / 2.0 * mu + 0.5).astype(np.int64)


def mulaw_decode(labels: np.ndarray | torch.Tensor, bits: int = 9) -> np.ndarray | torch.Tensor:
    """Inverse of ``mulaw_encode``: labels -> float32 audio in [-1, 1]."""
    y = mulaw_expand(label_to_float(labels, bits), 2**bits - 1)
    return y.float() if isinstance(y, torch.Tensor) else y.astype(np.float32)


# ---- output ------------------------------------------------------------------------------------
def save_wav(path: str | Path, wav: np.ndarray, sr: int = SAMPLE_RATE) -> None:
    """Write mono PCM16 wav atomically (a temporary file in the same folder, then a rename)."""
    from .wavfile import WavWriter

    with WavWriter(path, sr) as out:
        out.write(wav)


def __getattr__(name: str) -> Any:
    # ``rtclone.audio.denoise`` without importing rtclone.denoise (which imports this module) eagerly.
    if name == "denoise":
        from .denoise import denoise

        return denoise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
