"""Linear prediction from the mel (rtclone.lpc) and the LPC (excitation-domain) WaveRNN."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.signal
import torch

from rtclone import audio, lpc
from rtclone.errors import InputShapeError, OptionsError
from rtclone.train.vocoder import prepare_utterance
from rtclone.vocoder import VocoderDims, WaveRNN
from rtclone.vocoder_gen import VocoderOptions

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_LPC = VocoderDims(rnn_dims=32, fc_dims=32, res_blocks=1, compute_dims=16, res_out_dims=32, lpc_order=16)


def resonance(freq: float, bandwidth: float, seconds: float = 1.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """White noise through a two-pole resonator at ``freq`` Hz: (signal, its denominator)."""
    r = np.exp(-np.pi * bandwidth / audio.SAMPLE_RATE)
    den = np.array([1.0, -2.0 * r * np.cos(2 * np.pi * freq / audio.SAMPLE_RATE), r * r])
    noise = np.random.default_rng(seed).standard_normal(int(seconds * audio.SAMPLE_RATE)) * 0.01
    return scipy.signal.lfilter([1.0], den, noise), den


def envelope_peak_hz(a: np.ndarray) -> float:
    w, h = scipy.signal.freqz([1.0], a, worN=4000, fs=audio.SAMPLE_RATE)
    return float(w[np.argmax(np.abs(h))])


@pytest.mark.parametrize("freq", [700.0, 2500.0])
def test_the_predictor_finds_the_resonance_and_whitens_the_signal(freq):
    wav, _ = resonance(freq, 80.0)
    sig = audio.pre_emphasis(wav)  # the domain of the mel, of the predictor and of the network
    mel = audio.synth_mel(wav)
    a, g = lpc.mel_lpc(mel, 16)
    assert a.shape == (mel.shape[1], 17) and g.shape == (mel.shape[1],) and np.all(a[:, 0] == 1.0)
    mid = slice(5, -5)  # away from the edge frames' zero padding
    peaks = [envelope_peak_hz(row) for row in a[mid]]
    assert abs(np.median(peaks) - freq) < 60.0
    n = mel.shape[1] * 200
    sig = np.pad(sig, (0, max(0, n - len(sig))))[:n]
    z = lpc.excitation(sig, a, g, 200)
    e = z / lpc.EXCITATION_SCALE * g[lpc.frame_of(n, 0, 200, len(g))]
    core = slice(2000, n - 2000)
    gain_db = 10 * np.log10(np.sum(sig[core] ** 2) / np.sum(e[core] ** 2))
    assert gain_db > 6.0  # the predictor removes the resonance
    # g is the residual's level per sample: the excitation comes out near unit level before scaling
    assert 0.5 < np.std(z[core]) / lpc.EXCITATION_SCALE < 2.0


def test_every_frame_s_filter_is_stable():
    rng = np.random.default_rng(3)
    mel = np.clip(rng.normal(-1.0, 2.0, (80, 40)), -4, 4)  # arbitrary, also spiky, envelopes
    a, g = lpc.mel_lpc(mel, 24)
    assert np.all(g > 0)
    assert max(np.abs(np.roots(row)).max() for row in a) < 1.0


def test_synthesis_inverts_the_analysis_in_any_chunking():
    wav, _ = resonance(1200.0, 200.0, 0.6, seed=1)
    mel = audio.synth_mel(wav)
    n = mel.shape[1] * 200
    sig = np.pad(audio.pre_emphasis(wav), (0, n))[:n]
    a, g = lpc.mel_lpc(mel, 16)
    z = lpc.excitation(sig, a, g, 200)
    whole = lpc.synthesize(z, mel, 16, 200)
    np.testing.assert_allclose(whole, sig, atol=1e-9)
    syn = lpc.LpcSynthesis(16, 200)
    out, pos, have = [], 0, 0
    for frames, samples in ((3, 450), (0, 0), (10, 1999), (7, 1), (mel.shape[1] - 20, n - 2450)):
        syn.add_mel(mel[:, have : have + frames])
        have += frames
        out.append(syn.push(z[pos : pos + samples]))
        pos += samples
    np.testing.assert_allclose(np.concatenate(out), whole, atol=1e-12)
    assert len(syn.g) <= 3  # old frames are dropped as the stream moves on


def test_bad_inputs():
    with pytest.raises(InputShapeError):
        lpc.mel_lpc(np.zeros((40, 5)), 16)
    with pytest.raises(InputShapeError):
        lpc.mel_lpc(np.zeros((80, 5)), 0)
    with pytest.raises(InputShapeError):
        lpc.LpcSynthesis(16, 200).push(np.ones(10))
    with pytest.raises(OptionsError):
        VocoderDims(lpc_order=-1)
    with pytest.raises(OptionsError):
        VocoderDims(lpc_order=16, feat_dims=40)


def test_training_targets_are_the_quantised_excitation(speech):
    wav = speech("the north wind and the sun", sr=audio.SAMPLE_RATE)
    mel = audio.synth_mel(wav)
    utt = prepare_utterance(wav, mel, TINY_LPC)
    plain = prepare_utterance(wav, mel, dataclasses.replace(TINY_LPC, lpc_order=0))
    n = mel.shape[1] * 200
    sig = np.pad(audio.pre_emphasis(wav), (0, n))[:n]
    z = lpc.excitation(sig, *lpc.mel_lpc(mel, 16), 200)
    np.testing.assert_array_equal(utt.target, audio.mulaw_encode(np.clip(z, -1, 1), 9))
    assert not np.array_equal(utt.target, plain.target)
    # the level lives in the mel's gain: the excitation of loud and of quiet frames is about as loud
    def frame_rms(labels):
        x = audio.mulaw_decode(labels, 9)[: n // 200 * 200].reshape(-1, 200)
        return np.sqrt(np.mean(x**2, 1))

    speech_rms, exc_rms = frame_rms(plain.target), frame_rms(utt.target)
    loud, quiet = speech_rms > np.percentile(speech_rms, 80), speech_rms < np.percentile(speech_rms, 40)
    assert np.median(speech_rms[loud]) > 10 * np.median(speech_rms[quiet])
    assert np.median(exc_rms[loud]) < 3 * np.median(exc_rms[quiet])


def test_lpc_wavernn_streams_generates_and_batches_through_the_filter():
    torch.manual_seed(0)
    model = WaveRNN(TINY_LPC).eval()
    plain = WaveRNN(dataclasses.replace(TINY_LPC, lpc_order=0)).eval()
    plain.load_state_dict(model.state_dict())
    mel = torch.clamp(torch.randn(80, 23) * 2, -4, 4)
    opts = VocoderOptions(backend="torch", seed=5, de_emphasis=False, fade_out=0.0)
    ref = model.generate(mel, opts)
    parts = list(model.stream((mel[:, a:b] for a, b in ((0, 4), (4, 11), (11, 23))), opts))
    np.testing.assert_array_equal(np.concatenate(parts), ref)
    # the same network's samples, run through the mel's synthesis filter
    raw = plain.generate(mel, opts).astype(np.float64)
    np.testing.assert_allclose(ref, lpc.synthesize(raw, mel.numpy(), 16, 200).astype(np.float32), atol=1e-5)
    folded = model.generate(mel, opts, batched=True, target=1000, overlap=200)
    folded_raw = plain.generate(mel, opts, batched=True, target=1000, overlap=200).astype(np.float64)
    np.testing.assert_allclose(folded, lpc.synthesize(folded_raw, mel.numpy(), 16, 200).astype(np.float32), atol=1e-5)


def test_an_exported_lpc_vocoder_generates_through_the_filter(tmp_path):
    pytest.importorskip("onnxruntime")
    from rtclone.export import export_models
    from rtclone.runners import ArtifactVocoder, load_runner
    from rtclone.vocoder_gen import generate

    torch.manual_seed(1)
    model = WaveRNN(TINY_LPC).eval()
    export_models(tmp_path, encoder=None, vocoder=model, format="onnx")
    voc = ArtifactVocoder(load_runner(tmp_path))
    assert voc.dims.lpc_order == 16
    mel = torch.clamp(torch.randn(80, 9) * 2, -4, 4)
    ref = model.generate(mel, seed=2, backend="torch", fade_out=0.0)
    got = generate(voc, mel, seed=2, backend="torch", fade_out=0.0)
    assert np.abs(got - ref).max() < 1e-5 and ref.std() > 0
