"""Audio front-end on known signals: sines, silence and flite speech made at test time."""

from __future__ import annotations

import io
import shutil
import subprocess

import librosa
import numpy as np
import pytest
import scipy.signal
import soundfile as sf
import torch

from conftest import make_speech, speech_file
from rtclone import audio
from rtclone.audio import (
    SAMPLE_RATE,
    de_emphasis,
    dbfs,
    denoise,
    encoder_mel,
    ensure_wav,
    float_to_label,
    griffin_lim,
    label_to_float,
    load_audio,
    mulaw_compress,
    mulaw_decode,
    mulaw_encode,
    mulaw_expand,
    normalize_volume,
    pcm16_bytes,
    pre_emphasis,
    preprocess_wav,
    resample,
    save_wav,
    synth_mel,
    synth_mel_to_linear,
    trim_long_silences,
)
from rtclone.errors import AudioDecodeError, AudioError, SampleRateError, SilentAudioError

TEXT = "The quick brown fox jumps over the lazy dog near the river bank."
VAD_FRAME = 480  # 30 ms at 16 kHz


def sine(freq: float = 440.0, amp: float = 0.5, seconds: float = 1.0, sr: int = SAMPLE_RATE) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_freq(wav: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(wav * np.hanning(len(wav))))
    return float(np.argmax(spec) * sr / len(wav))


def wav_bytes(wav: np.ndarray, sr: int, fmt: str = "WAV", subtype: str | None = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, wav, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


# ---- level ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("amp", [1.0, 0.5, 0.01])
def test_dbfs_of_sine(amp):
    # RMS of a sine is amp / sqrt(2): 20 log10(amp) - 3.0103 dB.
    assert dbfs(sine(amp=amp)) == pytest.approx(20 * np.log10(amp) - 10 * np.log10(2), abs=1e-3)
    assert dbfs(np.zeros(100)) == float("-inf")


def test_normalize_volume_up_down_and_increase_only():
    quiet, loud = sine(amp=0.01), sine(amp=0.5)  # -43.0 and -9.0 dBFS
    assert dbfs(normalize_volume(quiet, -30.0)) == pytest.approx(-30.0, abs=1e-3)
    assert dbfs(normalize_volume(loud, -30.0)) == pytest.approx(-30.0, abs=1e-3)
    assert dbfs(normalize_volume(quiet, -30.0, increase_only=True)) == pytest.approx(-30.0, abs=1e-3)
    np.testing.assert_array_equal(normalize_volume(loud, -30.0, increase_only=True), loud)  # never lowered
    np.testing.assert_array_equal(normalize_volume(quiet, -30.0, decrease_only=True), quiet)  # never raised
    np.testing.assert_array_equal(normalize_volume(np.zeros(160, np.float32), -30.0), np.zeros(160))
    with pytest.raises(ValueError):
        normalize_volume(quiet, increase_only=True, decrease_only=True)


# ---- VAD trimming --------------------------------------------------------------------------------
def _voiced_span(wav: np.ndarray) -> int:
    """Samples from the first to the last 10 ms block above -50 dB of the peak."""
    blocks = wav[: len(wav) // 160 * 160].reshape(-1, 160)
    loud = np.flatnonzero(np.sqrt((blocks**2).mean(axis=1)) > np.abs(wav).max() * 10 ** (-50 / 20))
    return (loud[-1] - loud[0] + 1) * 160


def test_trim_removes_padding_and_keeps_speech():
    speech = normalize_volume(make_speech(TEXT, "slt"), -30.0)
    pad = np.zeros(int(1.5 * SAMPLE_RATE), np.float32)
    padded = np.concatenate([pad, speech, pad])
    trimmed = trim_long_silences(padded)
    voiced = _voiced_span(speech)
    # The 3 s of padding is gone: what stays is the voiced span plus at most the dilation margin.
    assert abs(len(trimmed) - voiced) < 0.35 * SAMPLE_RATE, (len(trimmed), voiced)
    assert len(trimmed) < len(padded) - 2.5 * SAMPLE_RATE
    assert len(trimmed) % VAD_FRAME == 0
    # Nothing voiced is lost: the energy is that of the speech.
    assert np.sum(trimmed.astype(np.float64) ** 2) == pytest.approx(np.sum(speech.astype(np.float64) ** 2), rel=0.01)


def test_trim_keeps_short_pauses_and_shortens_long_ones():
    speech = normalize_volume(make_speech("Hello there my friend.", "slt"), -30.0)
    blocks = np.sqrt((speech[: len(speech) // 160 * 160].reshape(-1, 160) ** 2).mean(axis=1))
    loud = np.flatnonzero(blocks > blocks.max() * 10 ** (-40 / 20))
    speech = speech[loud[0] * 160 : (loud[-1] + 1) * 160]  # no leading/trailing silence of its own
    base = len(trim_long_silences(np.concatenate([speech, speech])))
    short_gap = np.zeros(5 * VAD_FRAME, np.float32)  # 0.15 s, below the 6-frame limit
    long_gap = np.zeros(2 * SAMPLE_RATE, np.float32)  # 2 s
    with_short = trim_long_silences(np.concatenate([speech, short_gap, speech]))
    with_long = trim_long_silences(np.concatenate([speech, long_gap, speech]))
    assert len(with_short) - base == pytest.approx(len(short_gap), abs=2 * VAD_FRAME)
    assert len(with_long) - base < 0.5 * SAMPLE_RATE


@pytest.mark.parametrize("signal", ["zeros", "hiss"])
def test_all_silence_raises(signal):
    wav = np.zeros(2 * SAMPLE_RATE, np.float32)
    if signal == "hiss":
        wav = np.random.default_rng(0).normal(0, 1e-4, wav.shape).astype(np.float32)
    with pytest.raises(SilentAudioError):
        preprocess_wav(wav)
    with pytest.raises(SilentAudioError):
        preprocess_wav(wav_bytes(wav, SAMPLE_RATE))


def test_preprocess_matches_resemblyzer():
    from resemblyzer import preprocess_wav as ref_preprocess

    for voice in ("slt", "awb"):
        wav = make_speech(TEXT, voice)
        wav = np.concatenate([np.zeros(12000, np.float32), 0.1 * wav, np.zeros(20000, np.float32)])
        ours, ref = preprocess_wav(wav), ref_preprocess(wav)
        assert len(ours) == len(ref) < len(wav)
        np.testing.assert_allclose(ours, ref, atol=1e-6)
    # An in-memory signal at 22.05 kHz: resampling agrees too.
    wav22 = librosa.resample(wav, orig_sr=16000, target_sr=22050)
    ours, ref = preprocess_wav(wav22, 22050), ref_preprocess(wav22, 22050)
    assert len(ours) == len(ref)
    np.testing.assert_allclose(ours, ref, atol=1e-6)
    # From a file at 8 kHz (kal): decoding and resampling also agree.
    path = speech_file(TEXT, "kal")
    ours, ref = preprocess_wav(path), ref_preprocess(path)
    assert len(ours) == len(ref)
    np.testing.assert_allclose(ours, ref, atol=1e-6)


# ---- mels ----------------------------------------------------------------------------------------
def test_encoder_mel_matches_librosa():
    wav = make_speech(TEXT, "slt")
    mel = encoder_mel(wav)
    ref = librosa.feature.melspectrogram(y=wav, sr=16000, n_fft=400, hop_length=160, n_mels=40).T
    assert mel.shape == (1 + len(wav) // 160, 40) == ref.shape
    assert mel.dtype == np.float32
    assert np.abs(mel - ref).max() <= 1e-4 * ref.max()
    big = ref > 1e-6 * ref.max()
    np.testing.assert_allclose(mel[big], ref[big], rtol=1e-4)


def _librosa_synth_mel(wav: np.ndarray) -> np.ndarray:
    """RTVC's synthesizer mel written out with librosa calls (the reference)."""
    emph = scipy.signal.lfilter([1, -0.97], [1], wav.astype(np.float64))
    mag = np.abs(librosa.stft(emph, n_fft=800, hop_length=200, win_length=800))
    fb = librosa.filters.mel(sr=16000, n_fft=800, n_mels=80, fmin=55, fmax=7600)
    db = 20 * np.log10(np.maximum(1e-5, fb @ mag)) - 20
    return np.clip(8 * (db + 100) / 100 - 4, -4, 4)


def test_synth_mel_shape_range_and_reference():
    wav = np.concatenate([np.zeros(4000, np.float32), make_speech(TEXT, "slt")])
    mel = synth_mel(wav)
    assert mel.shape == (80, 1 + len(wav) // 200) and mel.dtype == np.float32
    assert mel.min() == -4.0  # leading digital silence sits at the floor
    assert -1.0 < mel.max() <= 4.0  # speech is well above it
    np.testing.assert_allclose(mel, _librosa_synth_mel(wav), atol=1e-4)


def test_synth_mel_inverse_reprojects():
    mel = synth_mel(make_speech(TEXT, "slt"))
    lin = synth_mel_to_linear(mel)
    assert lin.shape == (401, mel.shape[1]) and lin.min() > 0
    fb = librosa.filters.mel(sr=16000, n_fft=800, n_mels=80, fmin=55, fmax=7600)
    back = np.clip(8 * (20 * np.log10(np.maximum(1e-5, fb @ lin)) - 20 + 100) / 100 - 4, -4, 4)
    loud = mel > -3.0  # the pseudo-inverse is exact on the mel range except where it was floored
    assert np.abs(back - mel)[loud].mean() < 0.05  # measured 0.024 (0.3 dB)
    with pytest.raises(AudioError):
        synth_mel_to_linear(mel[:40])


def test_griffin_lim_round_trip():
    wav = make_speech(TEXT, "slt")
    mel = synth_mel(wav)

    def convergence(n_iter: int, power: float) -> float:
        y = griffin_lim(mel, n_iter=n_iter, power=power)
        assert y.dtype == np.float32 and len(y) == mel.shape[1] * 200
        spec = np.abs(librosa.stft(pre_emphasis(y.astype(np.float64)), n_fft=800, hop_length=200))[:, : mel.shape[1]]
        target = synth_mel_to_linear(mel) ** power
        return float(np.linalg.norm(spec - target) / np.linalg.norm(target))

    sc32 = convergence(32, 1.5)
    assert sc32 < 0.25  # measured 0.17 (the target is a pseudo-inverse, not a consistent spectrogram)
    assert sc32 < convergence(2, 1.5) - 0.05
    assert convergence(32, 1.0) < 0.25  # measured 0.16


# ---- emphasis and mu-law -------------------------------------------------------------------------
def test_emphasis_round_trip():
    wav = make_speech(TEXT, "slt")
    emph = pre_emphasis(wav)
    np.testing.assert_allclose(emph, scipy.signal.lfilter([1, -0.97], [1], wav), atol=1e-6)
    np.testing.assert_allclose(de_emphasis(emph), wav, atol=1e-5)
    noise = np.random.default_rng(1).uniform(-1, 1, 20000).astype(np.float32)
    np.testing.assert_allclose(de_emphasis(pre_emphasis(noise)), noise, atol=1e-5)
    assert pre_emphasis(noise).dtype == np.float32


def test_mulaw_round_trip_and_torch():
    bits, mu = 9, 511
    x = np.concatenate([np.linspace(-1, 1, 4001), np.random.default_rng(2).uniform(-1, 1, 4000)])
    labels = mulaw_encode(x, bits)
    assert labels.dtype == np.int64 and labels.min() == 0 and labels.max() == mu
    assert np.all(np.diff(mulaw_encode(np.linspace(-1, 1, 4001), bits)) >= 0)  # monotonic
    err = np.abs(mulaw_decode(labels, bits) - x)
    # Half a label step in the compressed domain (1/mu) stretched by the expansion curve.
    bound = (1 + mu * np.abs(x)) * ((1 + mu) ** (1 / mu) - 1) / mu
    assert np.all(err <= 1.01 * bound + 1e-7)
    assert err.max() < 0.0125
    # torch gives the same labels and values as numpy.
    t_labels = mulaw_encode(torch.from_numpy(x), bits)
    assert t_labels.dtype == torch.int64
    np.testing.assert_array_equal(t_labels.numpy(), labels)
    np.testing.assert_allclose(mulaw_decode(t_labels, bits).numpy(), mulaw_decode(labels, bits), atol=1e-6)
    # the float curves and the linear label maps are exact inverses
    np.testing.assert_allclose(mulaw_expand(mulaw_compress(x, mu), mu), x, atol=1e-12)
    np.testing.assert_allclose(label_to_float(float_to_label(x, bits), bits), x, atol=1e-6)
    assert label_to_float(np.array([0, mu]), bits).tolist() == [-1.0, 1.0]


# ---- loading, conversion, resampling -------------------------------------------------------------
@pytest.mark.parametrize("sr", [8000, 22050, 44100, 48000])
def test_resampling_of_common_rates(sr, tmp_path):
    src = sine(440.0, 0.5, 1.0, sr)
    for wav in (ensure_wav(src, sr), load_audio(wav_bytes(src, sr, subtype="FLOAT"))):
        assert len(wav) == pytest.approx(SAMPLE_RATE, abs=2)
        assert peak_freq(wav, SAMPLE_RATE) == pytest.approx(440.0, abs=1.0)
        assert dbfs(wav[400:-400]) == pytest.approx(dbfs(src), abs=0.05)
    np.testing.assert_allclose(resample(src, sr, sr), src)


@pytest.mark.parametrize("fmt,subtype", [("FLAC", "PCM_16"), ("OGG", "VORBIS"), ("MP3", "MPEG_LAYER_III")])
def test_load_compressed_formats(fmt, subtype, tmp_path):
    src = sine(300.0, 0.5, 1.0, 22050)
    path = tmp_path / f"a.{fmt.lower()}"
    sf.write(path, src, 22050, format=fmt, subtype=subtype)
    wav = load_audio(path)
    assert wav.dtype == np.float32
    assert len(wav) == pytest.approx(SAMPLE_RATE, abs=0.08 * SAMPLE_RATE)  # mp3 adds codec delay
    assert peak_freq(wav, SAMPLE_RATE) == pytest.approx(300.0, abs=2.0)
    assert dbfs(wav) == pytest.approx(dbfs(src), abs=0.5)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
def test_ffmpeg_fallback_for_formats_soundfile_cannot_read(tmp_path):
    src = tmp_path / "a.wav"
    sf.write(src, sine(500.0, 0.5, 1.0, 44100), 44100)
    aac = tmp_path / "a.m4a"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(src), str(aac)], check=True)
    for source in (aac, aac.read_bytes()):
        wav = load_audio(source)
        assert len(wav) == pytest.approx(SAMPLE_RATE, abs=0.1 * SAMPLE_RATE)
        assert peak_freq(wav, SAMPLE_RATE) == pytest.approx(500.0, abs=2.0)


def test_sources_path_bytes_and_file_object_agree(tmp_path):
    path = speech_file(TEXT, "slt")
    a = load_audio(path)
    np.testing.assert_array_equal(load_audio(str(path)), a)
    np.testing.assert_array_equal(load_audio(path.read_bytes()), a)
    with open(path, "rb") as f:
        np.testing.assert_array_equal(load_audio(f), a)


def test_stereo_is_folded_to_mono():
    left, right = sine(440.0, 0.5), sine(440.0, 0.1)
    mono = (left + right) / 2
    np.testing.assert_allclose(ensure_wav(np.stack([left, right], axis=1), SAMPLE_RATE), mono, atol=1e-7)  # (N, 2)
    np.testing.assert_allclose(ensure_wav(np.stack([left, right]), SAMPLE_RATE), mono, atol=1e-7)  # (2, N)
    np.testing.assert_allclose(ensure_wav(torch.from_numpy(np.stack([left, right])), SAMPLE_RATE), mono, atol=1e-7)
    stereo = wav_bytes(np.stack([left, right], axis=1), SAMPLE_RATE, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(stereo), mono, atol=1e-7)


def test_integer_and_double_inputs_are_converted():
    np.testing.assert_allclose(ensure_wav(np.array([16384, -32768, 0], np.int16), SAMPLE_RATE), [0.5, -1.0, 0.0])
    np.testing.assert_allclose(ensure_wav(np.array([2**30, -(2**31)], np.int32), SAMPLE_RATE), [0.5, -1.0])
    np.testing.assert_allclose(ensure_wav(np.array([128, 192, 0], np.uint8), SAMPLE_RATE), [0.0, 0.5, -1.0])
    out = ensure_wav(np.array([0.25, -0.5], np.float64), SAMPLE_RATE)
    assert out.dtype == np.float32 and out.tolist() == [0.25, -0.5]
    pcm = (sine(amp=0.5) * 32767).astype(np.int16)
    assert dbfs(ensure_wav(pcm, SAMPLE_RATE)) == pytest.approx(dbfs(sine(amp=0.5)), abs=1e-3)


def test_bad_in_memory_audio_gets_typed_errors():
    good = sine()
    bad_cases = {
        "empty": np.zeros(0, np.float32),
        "nan": np.where(np.arange(good.size) == 7, np.nan, good),
        "inf": np.where(np.arange(good.size) == 7, np.inf, good),
        "strings": np.array(["a", "b"]),
        "complex": good.astype(np.complex64),
        "3-D": np.zeros((2, 2, 100), np.float32),
        "wide 2-D": np.zeros((100, 100), np.float32),
    }
    for name, wav in bad_cases.items():
        with pytest.raises(AudioError):
            ensure_wav(wav, SAMPLE_RATE)
        with pytest.raises(AudioError):
            preprocess_wav(wav)
    for sr in (2000, 96000, 0):
        with pytest.raises(SampleRateError, match=str(sr)):
            ensure_wav(good, sr)
    for feature in (encoder_mel, synth_mel):
        with pytest.raises(AudioError):
            feature(np.zeros(0, np.float32))


def test_bad_files_get_typed_errors(tmp_path):
    good = wav_bytes(sine(), SAMPLE_RATE)
    corrupt = np.random.default_rng(3).integers(0, 256, 4000, dtype=np.uint8).tobytes()
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    for source, match in [
        (corrupt, "corrupt"),
        (good[:20], "corrupt"),  # truncated header
        (b"", "empty"),
        (empty, "empty"),
        (tmp_path / "missing.wav", "no such"),
        (tmp_path, "a folder, not an audio file"),
    ]:
        with pytest.raises(AudioDecodeError, match=match):
            load_audio(source)
    for sr in (2000, 96000):
        with pytest.raises(SampleRateError, match=str(sr)):
            load_audio(wav_bytes(sine(sr=sr), sr))
    assert issubclass(AudioDecodeError, AudioError) and issubclass(SampleRateError, AudioError)


# ---- output --------------------------------------------------------------------------------------
def test_save_wav_and_pcm16(tmp_path):
    wav = np.array([0.0, 0.5, -0.5, 1.5, -1.5], np.float32)
    pcm = np.frombuffer(pcm16_bytes(wav), "<i2")
    assert pcm.tolist() == [0, 16384, -16384, 32767, -32767]  # rounded, clipped
    path = tmp_path / "out.wav"
    save_wav(path, wav, 22050)
    data, sr = sf.read(path, dtype="int16")
    assert sr == 22050 and data.tolist() == pcm.tolist()
    assert sf.info(path).subtype == "PCM_16"
    assert [p.name for p in tmp_path.iterdir()] == ["out.wav"]  # no temporary file left behind


# ---- noise reduction -----------------------------------------------------------------------------
def test_denoise_improves_snr_of_speech_in_white_noise():
    speech = make_speech(TEXT, "slt")
    clean = np.concatenate([np.zeros(8000, np.float32), 0.5 * speech / np.abs(speech).max(), np.zeros(8000, np.float32)])
    noise = np.random.default_rng(4).standard_normal(clean.size).astype(np.float32)
    noise *= np.sqrt(np.sum(clean**2) / np.sum(noise**2) / 10 ** (5 / 10))  # 5 dB SNR

    def snr(x: np.ndarray) -> float:
        return float(10 * np.log10(np.sum(clean**2) / np.sum((x - clean) ** 2)))

    out = denoise(clean + noise)
    assert out.shape == clean.shape and out.dtype == np.float32
    assert snr(clean + noise) == pytest.approx(5.0, abs=0.01)
    assert snr(out) > snr(clean + noise) + 6.0  # measured +10.2 dB
    assert snr(denoise(clean)) > 20.0  # clean speech is left nearly untouched (measured 31.8 dB)
    assert audio.denoise is denoise


# ---- librosa-free front-end ----------------------------------------------------------------------
@pytest.mark.parametrize("sr, n_fft, n_mels, fmin, fmax", [(16000, 400, 40, 0.0, None), (16000, 800, 80, 55.0, 7600.0)])
def test_mel_basis_equals_librosa(sr, n_fft, n_mels, fmin, fmax):
    from rtclone.audio import _mel_basis

    ours = _mel_basis(sr, n_fft, n_mels, fmin, fmax)
    ref = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
    assert ours.shape == ref.shape and ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("orig", [8000, 22050, 44100, 48000])
def test_resample_equals_librosa_soxr_hq(orig):
    x = np.random.default_rng(orig).standard_normal(orig + 7).astype(np.float32) * 0.3
    ours, ref = resample(x, orig, 16000), librosa.resample(x, orig_sr=orig, target_sr=16000, res_type="soxr_hq")
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=1e-7)


def test_audio_front_end_does_not_import_librosa():
    # librosa's import compiles numba code for seconds (tens of seconds on a loaded machine) in
    # every process; the runtime path must not need it.
    import subprocess
    import sys

    code = ("import sys, numpy as np\nfrom rtclone import audio\nx = np.random.default_rng(0).standard_normal(22050).astype(np.float32) * 0.1\n"
            "w = audio.resample(x, 22050)\naudio.encoder_mel(w)\nm = audio.synth_mel(w)\naudio.griffin_lim(m, n_iter=2)\n"
            "assert 'librosa' not in sys.modules, 'librosa was imported'\n")  # fmt: skip
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


def test_griffin_lim_of_a_single_frame_is_one_hop():
    y = griffin_lim(np.full((80, 1), -4.0, np.float32))
    assert y.shape == (200,) and y.dtype == np.float32 and np.all(np.isfinite(y))
