"""The mel-envelope post-filter: exact where it should change nothing, removes a noise floor, bounded
boosts, chunking-invariant streaming, and its wiring into WaveRNN generation and the Cloner."""


import numpy as np
import pytest
import scipy.signal
import torch
from conftest import check_card_flag, tiny_cloner

from rtclone import audio
from rtclone.errors import CheckpointError, InputShapeError, OptionsError
from rtclone.pipeline import Cloner, SynthesisOptions
from rtclone.postfilter import LAG, MelEnvelopeFilter, postfilter, postfilter_audio
from rtclone.vocoder import VocoderDims, WaveRNN
from rtclone.vocoder_gen import VocoderOptions, stream_info

SR = 16000
HOP_SAMPLES = 200


def vowel(seconds: float = 0.6, f0: float = 140.0, seed: int = 0) -> np.ndarray:
    """A voiced, speech-like test signal: harmonics under a formant-ish envelope, amplitude-modulated."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    x = np.zeros_like(t)
    for k in range(1, int(7000 / f0)):
        f = k * f0
        amp = np.exp(-(((f - 700) / 400) ** 2)) + 0.3 * np.exp(-(((f - 2200) / 600) ** 2)) + 0.02
        x += amp * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
    x *= 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2
    return 0.1 * x / np.abs(x).max()


def in_band(x: np.ndarray) -> np.ndarray:
    """The part of x inside the mel filterbank's range (well inside 55-7600 Hz)."""
    return scipy.signal.filtfilt(scipy.signal.firwin(301, [120, 7300], fs=SR, pass_zero=False), [1.0], x)


def test_a_signal_already_at_its_mel_passes_unchanged_in_band():
    x = audio.pre_emphasis(vowel())
    mel = audio.synth_mel(audio.de_emphasis(x))
    y = postfilter(x, mel, max_gain=1000.0)
    assert y.shape == x.shape
    err = in_band(y - x)[800:-800]
    assert np.sqrt(np.mean(err**2)) < 1e-3 * np.sqrt(np.mean(x**2))


def test_content_outside_the_mel_range_is_removed():
    t = np.arange(SR // 2) / SR
    x = vowel(0.5) + 0.05 * np.sin(2 * np.pi * 7900 * t)  # above the filterbank's 7600 Hz
    mel = audio.synth_mel(x)
    y = postfilter_audio(x, mel, max_gain=1000.0)
    f, p_in = scipy.signal.welch(x, SR, nperseg=1024)
    _, p_out = scipy.signal.welch(y, SR, nperseg=1024)
    band = (f > 7800) & (f < 8000)
    assert p_out[band].max() < 1e-4 * p_in[band].max()


def test_a_noise_floor_is_pulled_down_to_the_mel():
    clean = vowel(1.0)
    clean[6000:10000] *= 0.01  # a quiet stretch, where a noise floor shows most
    noisy = clean + 0.004 * np.random.default_rng(1).standard_normal(len(clean))
    mel = audio.synth_mel(clean)

    def dist(w):
        return float(np.mean(np.abs(audio.synth_mel(w) - mel)))

    before, after = dist(noisy), dist(postfilter_audio(noisy, mel))
    assert before > 0.5 and after < 0.25 * before
    quiet = slice(6400, 9600)
    assert np.std(postfilter_audio(noisy, mel)[quiet]) < 0.2 * np.std(noisy[quiet])


@pytest.mark.parametrize("max_gain", [2.0, 4.0])
def test_boosts_stop_at_max_gain_and_floor_bands_are_never_raised(max_gain):
    loud = vowel(0.5)
    x = audio.pre_emphasis(0.01 * loud)  # 40 dB below the mel it is asked for
    y = postfilter(x, audio.synth_mel(loud), max_gain)
    ratio = np.sqrt(np.mean(in_band(y)[800:-800] ** 2) / np.mean(in_band(x)[800:-800] ** 2))
    assert 0.9 * max_gain < ratio <= max_gain * 1.001
    floor = np.full((80, 41), -4.0)  # a mel at its floor: "at most this quiet"
    quiet = audio.pre_emphasis(1e-6 * vowel(0.5))
    assert np.abs(postfilter(quiet, floor, max_gain)).max() <= np.abs(quiet).max() * 1.0001


def test_any_chunking_of_samples_and_frames_gives_the_same_output():
    rng = np.random.default_rng(2)
    x = audio.pre_emphasis(vowel(0.7) + 0.003 * rng.standard_normal(int(0.7 * SR)))
    mel = audio.synth_mel(vowel(0.7))
    whole = postfilter(x, mel)
    for trial in range(3):
        f, parts, i, m = MelEnvelopeFilter(), [], 0, 0
        while i < len(x):
            if m < mel.shape[1]:
                k = int(rng.integers(0, 6))
                f.add_mel(mel[:, m : m + k])
                m += k
            n = int(rng.integers(1, 1200))
            parts.append(f.push(x[i : i + n]))
            i += n
        f.add_mel(mel[:, m:])
        parts.append(f.finish())
        np.testing.assert_allclose(np.concatenate(parts), whole, rtol=0, atol=1e-12)


def test_one_frame_and_one_sample_at_a_time_gives_the_same_output():
    x = audio.pre_emphasis(vowel(0.2) + 0.003 * np.random.default_rng(3).standard_normal(int(0.2 * SR)))
    mel = audio.synth_mel(vowel(0.2))
    f, parts = MelEnvelopeFilter(), []
    for i in range(len(x)):
        if i % HOP_SAMPLES == 0 and i // HOP_SAMPLES < mel.shape[1]:
            f.add_mel(mel[:, i // HOP_SAMPLES : i // HOP_SAMPLES + 1])  # frame t arrives with sample t * hop
        parts.append(f.push(x[i : i + 1]))
    f.add_mel(mel[:, (len(x) - 1) // HOP_SAMPLES + 1 :])  # the frames past the last sample
    parts.append(f.finish())
    np.testing.assert_allclose(np.concatenate(parts), postfilter(x, mel), rtol=0, atol=1e-12)


def test_latency_is_lag_samples_and_waits_for_mel_frames():
    x = audio.pre_emphasis(vowel(0.5))
    mel = audio.synth_mel(vowel(0.5))
    f = MelEnvelopeFilter()
    assert len(f.push(x[:2000])) == 0  # no mel yet: nothing can be filtered
    f.add_mel(mel)
    out = f.push(x[2000:4000])
    assert len(out) == 4000 - LAG
    rest = f.finish()
    assert len(out) + len(rest) == 4000


def test_samples_past_the_last_mel_frame_pass_through():
    x = audio.pre_emphasis(vowel(0.5))
    mel = audio.synth_mel(audio.de_emphasis(x))[:, :10]  # frames 0-9 reach sample 9 * 200 + 400
    y = postfilter(x, mel)
    assert len(y) == len(x)
    np.testing.assert_array_equal(y[2200:], x[2200:])


def test_bad_input_is_a_clear_error():
    with pytest.raises(InputShapeError):
        MelEnvelopeFilter().add_mel(np.zeros((40, 3)))
    for bad in (0.5, True, float("nan"), "4"):
        with pytest.raises(OptionsError):
            MelEnvelopeFilter(bad)
        with pytest.raises(OptionsError):
            VocoderOptions(postfilter_max_gain=bad)
    with pytest.raises(OptionsError):
        VocoderOptions(postfilter=1)
    f = MelEnvelopeFilter()
    f.finish()
    with pytest.raises(RuntimeError):
        f.push(np.zeros(10))


# ---- wiring ---------------------------------------------------------------------------------------
def tiny_vocoder() -> WaveRNN:
    torch.manual_seed(0)
    return WaveRNN(VocoderDims(rnn_dims=32, fc_dims=32, res_blocks=1, compute_dims=16, res_out_dims=32)).eval()


@pytest.mark.parametrize("batched", [False, True])
def test_generation_filters_the_pre_emphasised_output(batched):
    model = tiny_vocoder()
    mel = audio.synth_mel(vowel(0.5))
    kw = dict(seed=3, backend="torch", fade_out=0.0, batched=batched, target=1200, overlap=200)
    raw = model.generate(mel, de_emphasis=False, **kw)
    got = model.generate(mel, de_emphasis=False, postfilter=True, **kw)
    np.testing.assert_allclose(got, postfilter(raw.astype(np.float64), mel), atol=2e-6)
    assert np.mean(np.abs(audio.synth_mel(audio.de_emphasis(got)) - mel)) < 0.5 * np.mean(np.abs(audio.synth_mel(audio.de_emphasis(raw)) - mel))


def test_streaming_with_the_filter_equals_generation_and_stream_info_holds():
    model = tiny_vocoder()
    mel = audio.synth_mel(vowel(0.5))  # 41 frames
    opts = VocoderOptions(backend="torch", seed=1, cond_block=4, fade_out=0.0, postfilter=True)
    ref = model.generate(mel, opts)
    consumed = []

    def frames():
        for j in range(mel.shape[1]):
            consumed.append(j + 1)
            yield mel[:, j : j + 1]

    gen = model.stream(frames(), opts)
    first = next(gen)
    info = stream_info(model, opts)
    assert info.postfilter_lag_samples == LAG and consumed[-1] == info.first_chunk_frames
    assert len(first) == (info.first_chunk_frames - model.lookahead) * 200 - LAG
    np.testing.assert_array_equal(np.concatenate([first, *gen]), ref)


def test_the_filter_needs_synthesizer_mels():
    torch.manual_seed(0)
    odd = WaveRNN(VocoderDims(rnn_dims=32, fc_dims=32, res_blocks=1, compute_dims=16, res_out_dims=32, feat_dims=40)).eval()
    with pytest.raises(OptionsError, match="post-filter"):
        odd.generate(np.zeros((40, 5), np.float32), backend="torch", postfilter=True)


def test_cloner_applies_the_filter_and_model_cards_switch_it(tmp_path):
    from rtclone.checkpoints import save_model

    cloner = tiny_cloner(0)
    mel = audio.synth_mel(vowel(0.5))
    opts = SynthesisOptions(seed=2, backend="torch")
    plain = cloner.vocode(mel, opts)
    cloner.postfilter = True
    filtered = cloner.vocode(mel, opts)
    ref = cloner.vocoder.generate(mel, batched=False, seed=2, backend="torch", fade_out=0.0, postfilter=True)
    np.testing.assert_allclose(filtered, np.clip(ref, -1, 1), atol=1e-6)
    assert not np.allclose(plain, filtered)

    save_model(cloner.synthesizer, tmp_path / "synthesizer.pt", "synthesizer")
    assert Cloner.from_dir(tmp_path).postfilter is False  # no vocoder, no card
    save_model(cloner.vocoder, tmp_path / "vocoder.pt", "vocoder")
    check_card_flag(tmp_path, "vocoder", "postfilter")  # with a trained vocoder the card decides
    (tmp_path / "card.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="card"):
        Cloner.from_dir(tmp_path)
    with pytest.raises(OptionsError):
        Cloner(cloner.encoder, cloner.synthesizer, cloner.vocoder, postfilter=1)
