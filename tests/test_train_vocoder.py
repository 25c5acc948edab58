"""Vocoder training: MoL loss, overfitting a short clip, resume, pruning during training, data inputs."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from scipy.stats import logistic

from rtclone import audio
from rtclone.checkpoints import load_model, read_checkpoint
from rtclone.errors import InputShapeError, OptionsError
from rtclone.sparse import PRUNABLE, PruneSchedule, block_sparsity
from rtclone.train.vocoder import (mol_loss, prepare_utterance, sample_batch, train_vocoder, validation_loss, vocoder_loss,
                                   vocoder_pairs)
from rtclone.vocoder import VocoderDims, WaveRNN

TINY = VocoderDims(rnn_dims=32, fc_dims=32, res_blocks=1, compute_dims=16, res_out_dims=32)


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one torch thread for the module


def _mol_nll(params: torch.Tensor, y: float, n: int) -> float:
    return float(mol_loss(params.view(1, 1, 30).double(), torch.tensor([[y]], dtype=torch.float64), num_classes=n))


def test_mol_loss_is_a_normalised_discrete_distribution():
    g = torch.Generator().manual_seed(0)
    params = torch.cat([torch.randn(10, generator=g), torch.rand(10, generator=g) * 1.6 - 0.8, -1 - 2 * torch.rand(10, generator=g)])
    n = 64
    levels = audio.label_to_float(np.arange(n), 6)
    probs = np.array([np.exp(-_mol_nll(params, float(y), n)) for y in levels])
    assert probs.sum() == pytest.approx(1.0, abs=1e-6)
    # One dominant logistic: the bin mass is the difference of two logistic CDFs (scipy).
    one = torch.tensor([30.0] + [0.0] * 9 + [0.1] + [0.0] * 9 + [-2.0] + [0.0] * 9)
    s, h = np.exp(-2.0), 1.0 / (n - 1)
    for y in (levels[20], levels[40]):
        want = logistic.cdf(y + h, 0.1, s) - logistic.cdf(y - h, 0.1, s)
        assert np.exp(-_mol_nll(one, float(y), n)) == pytest.approx(want, rel=1e-6)
    assert np.exp(-_mol_nll(one, -1.0, n)) == pytest.approx(logistic.cdf(-1 + h, 0.1, s), rel=1e-6)
    with pytest.raises(InputShapeError):
        mol_loss(torch.zeros(1, 5, 29), torch.zeros(1, 5))


def test_raw_loss_is_the_mean_label_nll():
    """RAW: the mean over segments and samples of -log softmax(logits)[label]."""
    torch.manual_seed(0)
    model = WaveRNN(TINY)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 400, generator=g) * 2 - 1
    mels = torch.randn(2, TINY.feat_dims, 2 + 2 * TINY.pad, generator=g)
    y = torch.randint(0, 512, (2, 400), generator=g)
    with torch.no_grad():
        logp = torch.log_softmax(model(x, mels).double(), -1)
        want = -logp.gather(-1, y.unsqueeze(-1)).mean()
        assert float(vocoder_loss(model, x, mels, y)) == pytest.approx(float(want), rel=1e-6)


def _log_mel_distance(model: WaveRNN, mel: np.ndarray) -> float:
    y = model.generate(mel, backend="torch", seed=0, fade_out=0.0)
    rebuilt = audio.synth_mel(y)
    n = min(rebuilt.shape[1], mel.shape[1]) - 1
    return float(np.mean(np.abs(rebuilt[:, :n] - mel[:, :n])))


@pytest.mark.slow
def test_tiny_vocoder_overfits_a_short_clip(speech, tmp_path):
    wav = speech("Hello.", "kal16")[:9600]  # 0.6 s of flite speech
    mel = audio.synth_mel(wav)
    held = sample_batch([prepare_utterance(wav, mel, TINY)], TINY, 32, 1, np.random.default_rng(123))  # fixed batch
    torch.manual_seed(0)
    model = WaveRNN(TINY).eval()
    with torch.no_grad():
        loss_before = float(vocoder_loss(model, *held))
    dist_before = _log_mel_distance(model, mel)
    result = train_vocoder(
        [(wav, None)], tmp_path, dims=TINY, steps=40, batch_size=8, seq_len=1, lr=5e-3, seed=0, progress=False
    )
    assert len(result["losses"]) == 40 and loss_before == pytest.approx(np.log(512), rel=0.05)  # ~uniform start
    trained = load_model(result["checkpoint"], kind="vocoder")
    with torch.no_grad():
        loss_after = float(vocoder_loss(trained, *held))
    assert loss_before / loss_after >= 1.3  # stated factor: the cross-entropy falls by at least 1.3x
    assert _log_mel_distance(trained, mel) < 0.6 * dist_before


def _short_clip(speech) -> np.ndarray:
    return speech("Resume.", "kal16")[:4000]


def test_resume_equals_straight_run_and_pruning_is_exact(speech, tmp_path):
    wav = _short_clip(speech)
    schedule = PruneSchedule(target=0.5, start=0, end=4, every=2, block=(8, 1))
    kw = dict(dims=TINY, batch_size=2, seq_len=1, lr=1e-3, prune=schedule, seed=3, progress=False, checkpoint_every=2)
    straight = train_vocoder([(wav, None)], tmp_path / "a", steps=4, **kw)
    first = train_vocoder([(wav, None)], tmp_path / "b", steps=2, **kw)
    resumed = train_vocoder([(wav, None)], tmp_path / "b", steps=4, sample_every=4, sample_seconds=0.05, **kw)
    assert len(first["losses"]) == 2 and len(resumed["losses"]) == 2 and resumed["step"] == 4
    assert resumed["losses"] == straight["losses"][2:]
    a = read_checkpoint(tmp_path / "a" / "vocoder.pt")
    b = read_checkpoint(tmp_path / "b" / "vocoder.pt")
    assert a.meta["step"] == b.meta["step"] == 4 and int(b.model_state["step"]) == 4
    for name, value in a.model_state.items():
        assert torch.equal(value, b.model_state[name]), name
    for name in PRUNABLE:
        w = b.model_state[name]
        n_blocks = w.shape[0] // 8 * w.shape[1]
        assert block_sparsity(w, (8, 1)) == pytest.approx(round(0.5 * n_blocks) / n_blocks)
    assert resumed["sparsity"]["total"] == pytest.approx(0.5, abs=0.01)
    (sample,) = resumed["samples"]
    assert audio.load_audio(sample).shape == (4 * 200,)  # 0.05 s -> 5 frames -> 4 hops


def test_resume_trains_at_the_rate_it_is_given(speech, tmp_path):
    """A resumed run uses its own lr, not the one saved with the optimizer (as the synthesizer's does)."""
    wav = _short_clip(speech)
    kw = dict(dims=TINY, batch_size=2, seq_len=1, seed=3, progress=False, checkpoint_every=1)
    train_vocoder([(wav, None)], tmp_path, steps=1, lr=1e-2, **kw)
    before = read_checkpoint(tmp_path / "vocoder.pt").model_state
    train_vocoder([(wav, None)], tmp_path, steps=2, lr=1e-7, **kw)
    after = read_checkpoint(tmp_path / "vocoder.pt").model_state
    moved = max(float((after[k].float() - before[k].float()).abs().max()) for k in PRUNABLE)
    assert 0 < moved < 1e-5  # an Adam step moves a weight by about lr (1e-2 had it been the saved rate)


def test_mol_mode_trains(speech, tmp_path):
    wav = _short_clip(speech)
    dims = dataclasses.replace(TINY, mode="MOL", bits=16, mu_law=False)
    result = train_vocoder([(wav, None)], tmp_path, dims=dims, steps=2, batch_size=2, seq_len=1, lr=1e-3, progress=False)
    assert len(result["losses"]) == 2 and all(np.isfinite(result["losses"]))
    assert load_model(result["checkpoint"]).dims.mode == "MOL"


def test_data_from_paths_and_gta_npy(speech, tmp_path):
    wav = _short_clip(speech)
    wav_path, mel_path = tmp_path / "u.wav", tmp_path / "u.npy"
    audio.save_wav(wav_path, wav)
    gta = audio.synth_mel(wav) * 0.9  # any mel of the right shape stands in for a GTA mel
    np.save(mel_path, gta)
    audio.save_wav(tmp_path / "no_mel.wav", wav)
    assert vocoder_pairs(tmp_path, tmp_path) == [(wav_path, mel_path)]
    assert vocoder_pairs(tmp_path) == [(tmp_path / "no_mel.wav", None), (wav_path, None)]
    from_paths = prepare_utterance(str(wav_path), str(mel_path), TINY)
    from_arrays = prepare_utterance(audio.load_audio(wav_path), gta, TINY)
    assert np.array_equal(from_paths.mel, from_arrays.mel) and np.array_equal(from_paths.target, from_arrays.target)
    assert from_paths.target.shape == (gta.shape[1] * 200,) and from_paths.target.max() <= 511
    expected = audio.mulaw_encode(np.clip(audio.pre_emphasis(audio.load_audio(wav_path)), -1, 1), 9)[:1000]
    assert np.array_equal(from_paths.target[:1000], expected)
    with pytest.raises(InputShapeError):
        prepare_utterance(wav, np.zeros((79, 5), np.float32), TINY)
    with pytest.raises(InputShapeError):
        train_vocoder([(wav[:400], None)], tmp_path / "x", dims=TINY, steps=1, progress=False)
    with pytest.raises(OptionsError):
        train_vocoder([(wav, None)], tmp_path / "y", dims=TINY, steps=0, progress=False)


def test_bf16_autocast_and_validation_loss(speech, tmp_path):
    wav = _short_clip(speech)
    kw = dict(dims=TINY, steps=2, batch_size=2, seq_len=1, lr=1e-3, seed=5, progress=False, checkpoint_every=2)
    val_wav = speech("Checked.", "kal16")[:4000]
    res = train_vocoder([(wav, None)], tmp_path / "bf", bf16=True, val=[(val_wav, None)], val_segments=4, **kw)
    # the first step's loss is the initial model's loss on step 0's batch under bfloat16 autocast
    torch.manual_seed(5)
    init = WaveRNN(TINY).train()
    batch = sample_batch([prepare_utterance(wav, None, TINY)], TINY, 2, 1, np.random.default_rng([5, 0]))
    with torch.no_grad():
        fp32 = float(vocoder_loss(init, *batch))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf = float(vocoder_loss(init, *batch))
    assert res["losses"][0] == pytest.approx(bf, rel=1e-5) and bf != fp32
    assert bf == pytest.approx(fp32, rel=0.02)  # bfloat16 passes, float32 loss: close to the float32 pass
    # val_loss in log.jsonl: the saved model's eval-mode loss on 4 fixed held-out segments
    row = [json.loads(line) for line in (tmp_path / "bf" / "log.jsonl").read_text().splitlines()][-1]
    trained = load_model(tmp_path / "bf" / "vocoder.pt", kind="vocoder")
    held = sample_batch([prepare_utterance(val_wav, None, TINY)], TINY, 4, 1, np.random.default_rng([5, 7919]))
    assert row["val_loss"] == pytest.approx(validation_loss(trained, held, bf16=True), rel=1e-5)
    assert row["val_loss"] != pytest.approx(validation_loss(trained, held, bf16=False), rel=1e-6)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_two_processes_average_their_gradients(speech, tmp_path):
    wav = _short_clip(speech)
    (tmp_path / "data").mkdir()
    audio.save_wav(tmp_path / "data" / "u.wav", wav)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc_per_node", "2",
           "-m", "rtclone.train.vocoder", str(tmp_path / "data"), str(tmp_path / "run"), "--steps", "1",
           "--batch-size", "2", "--checkpoint-every", "1", "--rnn-dims", "32", "--fc-dims", "32", "--lr", "1e-3",
           "--seed", "4"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=200, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["world_size"] == 2 and res["step"] == 1
    # reference, in this process: one Adam step on the mean of the two ranks' gradients
    dims = VocoderDims(rnn_dims=32, fc_dims=32)
    torch.manual_seed(4)
    model = WaveRNN(dims).train()
    utt = prepare_utterance(audio.load_audio(tmp_path / "data" / "u.wav"), None, dims)
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    grads = []
    for rank in (1, 0):  # batch-norm statistics: rank 0 saves its own, so its pass comes last from the start ones
        model.load_state_dict(buffers, strict=False)
        model.zero_grad()
        vocoder_loss(model, *sample_batch([utt], dims, 2, 5, np.random.default_rng([4, 0, rank]))).backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for p, g0, g1 in zip(model.parameters(), *grads):
        p.grad = (g0 + g1) / 2
    torch.nn.utils.clip_grad_norm_(model.parameters(), 4.0)
    torch.optim.Adam(model.parameters(), lr=1e-3).step()
    got = read_checkpoint(tmp_path / "run" / "vocoder.pt").model_state
    for name, value in model.state_dict().items():
        if name != "step" and value.is_floating_point():
            torch.testing.assert_close(got[name], value, atol=2e-6, rtol=1e-4, msg=name)


def test_segments_line_sample_t_hop_up_with_mel_frame_t():
    """A short tone burst centred on sample 10 * hop lights mel frame 10 (centred STFT), and in every sampled
    segment that holds it the burst sits (frame index in the window - pad) * hop samples into the targets."""
    hop, n_frames, burst_frame = TINY.hop_length, 20, 10
    t = np.arange(n_frames * hop)
    centre = burst_frame * hop
    wav = np.where(np.abs(t - centre) < 60, 0.5 * np.sin(2 * np.pi * 1000 * t / 16000), 0.0).astype(np.float32)
    utt = prepare_utterance(wav, None, TINY)
    assert int(np.argmax(utt.mel.mean(0))) == burst_frame  # the ground-truth mel's loudest frame is the burst's
    silence = int(audio.mulaw_encode(np.zeros(1), TINY.bits)[0])
    seq = 4
    x, mels, y = sample_batch([utt], TINY, 64, seq, np.random.default_rng(0))
    assert x.shape == y.shape == (64, seq * hop) and mels.shape == (64, TINY.feat_dims, seq + 2 * TINY.pad)
    held = 0
    for b in range(64):
        loud = int(torch.argmax(mels[b].mean(0)))  # the burst's frame within the window, if it is there
        if mels[b].mean(0)[loud] < utt.mel.mean(0)[burst_frame] - 1e-6 or not TINY.pad < loud < seq + TINY.pad:  # burst whole
            continue
        held += 1
        nonsilent = np.flatnonzero(y[b].numpy() != silence)  # y[k] is sample start + k + 1
        mid = (nonsilent.min() + nonsilent.max()) / 2 + 1
        assert abs(mid - (loud - TINY.pad) * hop) <= 2
        # the inputs are the targets one sample earlier, in the model's [-1, 1] domain
        assert torch.equal(x[b, 1:], audio.label_to_float(y[b, :-1], TINY.bits))
    assert held >= 10
