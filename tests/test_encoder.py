"""Speaker encoder: RTVC/resemblyzer weight loading, partial slicing, parity with resemblyzer, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import make_speech, speech_file
from rtclone.audio import preprocess_wav
from rtclone.checkpoints import load_encoder, load_model, resemblyzer_weights_path, save_model
from rtclone.encoder import (
    DEFAULT_VERIFY_THRESHOLD,
    EmbedOptions,
    EncoderDims,
    SpeakerEncoder,
    compute_partial_slices,
    embed_file,
    embed_speaker,
    embed_utterance,
    speaker_similarity,
    verify,
)
from rtclone.errors import AudioError, AudioTooShortError, InputShapeError, OptionsError, SilentAudioError


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one torch thread for the module


SENTENCE = "Please call Stella. Ask her to bring these things with her from the store."
OTHER = "Six spoons of fresh snow peas, five thick slabs of blue cheese, and maybe a snack."
VOICES = [("kal", "flite"), ("awb", "flite"), ("rms", "flite"), ("slt", "flite"), ("en-us", "espeak-ng")]


@pytest.fixture(scope="module")
def pretrained() -> SpeakerEncoder:
    return load_encoder()


@pytest.fixture(scope="module")
def resemblyzer_encoder():
    resemblyzer = pytest.importorskip("resemblyzer")
    return resemblyzer.VoiceEncoder("cpu", verbose=False)


def _tiny(seed: int = 0) -> SpeakerEncoder:
    torch.manual_seed(seed)
    return SpeakerEncoder(EncoderDims(n_mels=40, hidden=24, n_layers=2, embed=16)).eval()


# ---- dims and weights ------------------------------------------------------------------------
def test_dims_read_off_rtvc_shapes():
    sd = torch.load(resemblyzer_weights_path(), map_location="cpu", weights_only=True)["model_state"]
    assert EncoderDims.from_rtvc_state_dict(sd) == EncoderDims(40, 256, 3, 256)
    tiny = _tiny().state_dict()
    assert EncoderDims.from_rtvc_state_dict(tiny) == EncoderDims(40, 24, 2, 16)


def test_pretrained_loads_strictly_with_rtvc_names(pretrained):
    sd = torch.load(resemblyzer_weights_path(), map_location="cpu", weights_only=True)["model_state"]
    ours = pretrained.state_dict()
    assert sorted(ours) == sorted(sd)
    assert sum(v.numel() for v in ours.values()) == sum(v.numel() for v in sd.values())
    for k, v in sd.items():
        assert torch.equal(ours[k], v), k
    assert pretrained.similarity_weight.item() == pytest.approx(70.89, abs=0.01)


def test_forward_is_unit_norm_and_nonnegative():
    model = _tiny()
    x = torch.rand(5, 37, 40)  # (B, T, n_mels)
    with torch.no_grad():
        e = model(x)
    assert e.shape == (5, 16)
    assert torch.allclose(e.norm(dim=1), torch.ones(5), atol=1e-5)
    assert (e >= 0).all()
    # Batching does not change a row's embedding.
    with torch.no_grad():
        e1 = model(x[2:3])
    assert torch.allclose(e1[0], e[2], atol=1e-6)


def test_rtclone_checkpoint_round_trip(tmp_path):
    model = _tiny(3)
    path = save_model(model, tmp_path / "enc.pt", "encoder")
    loaded = load_model(path, "encoder")
    assert loaded.dims == model.dims
    x = torch.rand(2, 20, 40)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


# ---- partials --------------------------------------------------------------------------------
def test_partial_slices_match_resemblyzer(resemblyzer_encoder):
    for n in list(range(0, 40000, 997)) + [25599, 25600, 25601, 16000 * 30]:
        ours = compute_partial_slices(n, EmbedOptions())
        ref = resemblyzer_encoder.compute_partial_slices(n, 1.3, 0.75)
        assert ours == (list(ref[0]), list(ref[1])), n


def test_partial_slices_rtvc_step_by_hand():
    # 3 s: ceil(48001 / 160) = 301 frames; starts 0, 80, 160 (range stop 301 - 160 + 80 + 1 = 222);
    # the last partial starts at sample 25600 and is covered (48000 - 25600) / 25600 = 87.5 % >= 75 %.
    wav_sl, mel_sl = compute_partial_slices(48000, EmbedOptions(rate=None, frame_step=80))
    assert mel_sl == [slice(0, 160), slice(80, 240), slice(160, 320)]
    assert wav_sl == [slice(0, 25600), slice(12800, 38400), slice(25600, 51200)]
    # 2.8 s: 281 frames; starts 0, 80, 160 (stop 202); last coverage (44800 - 25600) / 25600 = 75 % -> kept.
    assert len(compute_partial_slices(44800, EmbedOptions(rate=None, frame_step=80))[1]) == 3
    # One sample less: 74.996 % < 75 % -> dropped.
    assert len(compute_partial_slices(44799, EmbedOptions(rate=None, frame_step=80))[1]) == 2
    # Shorter than one partial: always exactly one slice.
    assert compute_partial_slices(8000, EmbedOptions())[1] == [slice(0, 160)]


@pytest.mark.parametrize("kwargs", [
    dict(rate=1.3, frame_step=80), dict(rate=None), dict(rate=0.5), dict(rate=-1.0), dict(rate=float("nan")),
    dict(rate=None, frame_step=0), dict(rate=None, frame_step=161), dict(min_coverage=0.0),
    dict(min_coverage=1.5), dict(partial_frames=0), dict(min_seconds=-1),
])
def test_embed_options_are_validated(kwargs):
    with pytest.raises(OptionsError):
        EmbedOptions(**kwargs)


# ---- parity with resemblyzer -----------------------------------------------------------------
@pytest.mark.parametrize("voice,engine", VOICES)
def test_embedding_matches_resemblyzer(pretrained, resemblyzer_encoder, voice, engine):
    wav = preprocess_wav(make_speech(SENTENCE, voice, engine))
    ours, partials, slices = embed_utterance(pretrained, wav, return_partials=True)
    ref, ref_partials, ref_slices = resemblyzer_encoder.embed_utterance(wav, return_partials=True)
    assert ours.shape == (256,) and ours.dtype == np.float32
    assert np.linalg.norm(ours) == pytest.approx(1.0, abs=1e-5)
    assert float(ours @ ref) >= 0.9999
    assert slices == list(ref_slices)
    assert partials.shape == ref_partials.shape
    assert np.abs(partials - ref_partials).max() < 1e-4


def test_rtvc_step_option_matches_resemblyzer_at_rate(pretrained, resemblyzer_encoder):
    # RTVC's step of 80 frames is resemblyzer's rate 100 / 80 = 1.25 partials per second.
    wav = preprocess_wav(make_speech(SENTENCE, "awb"))
    ours = embed_utterance(pretrained, wav, EmbedOptions(rate=None, frame_step=80))
    ref = resemblyzer_encoder.embed_utterance(wav, rate=1.25)
    assert float(ours @ ref) >= 0.9999


def test_embed_speaker_is_normalised_mean_of_utterances(pretrained, resemblyzer_encoder):
    wavs = [preprocess_wav(make_speech(t, "rms")) for t in (SENTENCE, OTHER)]
    ours = embed_speaker(pretrained, wavs)
    utts = np.stack([embed_utterance(pretrained, w) for w in wavs])
    expect = utts.mean(0) / np.linalg.norm(utts.mean(0))
    assert np.abs(ours - expect).max() < 1e-5
    assert float(ours @ resemblyzer_encoder.embed_speaker(wavs)) >= 0.9999


def test_embed_file_preprocesses(pretrained):
    path = speech_file(SENTENCE, "slt")
    expect = embed_utterance(pretrained, preprocess_wav(path))
    assert np.abs(embed_file(pretrained, path) - expect).max() < 1e-6


def test_verify_separates_voices(pretrained):
    a1 = preprocess_wav(make_speech(SENTENCE, "awb"))
    a2 = preprocess_wav(make_speech(OTHER, "awb"))
    b = preprocess_wav(make_speech(OTHER, "slt"))
    cos_same, same = verify(pretrained, a1, a2)
    cos_diff, diff = verify(pretrained, a1, b)
    assert same and not diff
    assert cos_same > DEFAULT_VERIFY_THRESHOLD > cos_diff
    assert cos_same == pytest.approx(speaker_similarity(embed_utterance(pretrained, a1), embed_utterance(pretrained, a2)))


# ---- bad input -------------------------------------------------------------------------------
def test_bad_waveforms_get_typed_errors():
    model = _tiny()
    ok = (0.1 * np.sin(np.arange(16000) * 0.05)).astype(np.float32)
    bad_nan = ok.copy()
    bad_nan[100] = np.nan
    bad_inf = ok.copy()
    bad_inf[5] = np.inf
    cases = [
        (np.zeros(0, np.float32), AudioTooShortError),
        (ok[:4000], AudioTooShortError),  # 0.25 s < 0.5 s
        (np.zeros(16000, np.float32), SilentAudioError),
        (bad_nan, AudioError),
        (bad_inf, AudioError),
        (np.stack([ok, ok]), InputShapeError),
        ((ok * 32767).astype(np.int16), InputShapeError),
    ]
    for wav, err in cases:
        with pytest.raises(err):
            embed_utterance(model, wav)
    # float64 is converted, not rejected; the result equals the float32 one.
    e64 = embed_utterance(model, ok.astype(np.float64))
    assert np.abs(e64 - embed_utterance(model, ok)).max() < 1e-6
    with pytest.raises(InputShapeError):
        embed_speaker(model, [])
    with pytest.raises(InputShapeError):
        speaker_similarity(np.zeros(4), np.ones(4))


def test_embed_file_bad_and_unusual_files(pretrained, tmp_path):
    import soundfile as sf

    from rtclone.errors import AudioDecodeError

    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt garbage")
    with pytest.raises(AudioDecodeError):
        embed_file(pretrained, corrupt)
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(32000, np.float32), 16000)
    with pytest.raises(SilentAudioError):
        embed_file(pretrained, silent)
    # Stereo at 44.1 kHz is folded and resampled: same speaker as the 16 kHz mono original.
    import librosa

    mono = make_speech(SENTENCE, "rms")
    stereo = tmp_path / "stereo.wav"
    up = librosa.resample(mono, orig_sr=16000, target_sr=44100)
    sf.write(stereo, np.stack([up, up], axis=1), 44100)
    cos = float(embed_file(pretrained, stereo) @ embed_utterance(pretrained, preprocess_wav(mono)))
    assert cos > 0.99
