"""GE2E training: the loss against a loop reference, the gradient rules, dataset readers, resume, a tiny run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rtclone.audio import save_wav
from rtclone.checkpoints import read_checkpoint, load_model
from rtclone.encoder import EmbedOptions, EncoderDims, SpeakerEncoder
from rtclone.errors import InputShapeError, OptionsError
from rtclone.eval import eval_encoder
from rtclone.train.data import GE2EBatchSampler, speaker_files, transcribed_items
from rtclone.train.encoder import GRAD_CLIP_NORM, ge2e_loss, read_log, similarity_matrix, train_encoder, train_step
from test_eval import CALIBRATION_SENTENCES, CALIBRATION_VOICES, write_voice_folder


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one torch thread for the module


# ---- loss ------------------------------------------------------------------------------------
def _loop_reference(e: torch.Tensor, w: float, b: float) -> tuple[np.ndarray, float]:
    """GE2E similarities and loss written out utterance by utterance (float64)."""
    e = e.double()
    S, U, _ = e.shape
    cos = lambda x, y: float(x @ y / (x.norm() * y.norm()))  # noqa: E731
    sim = np.zeros((S, U, S))
    loss = 0.0
    for j in range(S):
        for i in range(U):
            for k in range(S):
                if k == j:
                    others = [e[j, m] for m in range(U) if m != i]
                    c = torch.stack(others).mean(0)
                else:
                    c = e[k].mean(0)
                sim[j, i, k] = cos(e[j, i], c)
            logits = w * sim[j, i] + b
            loss += -(logits[j] - np.log(np.exp(logits).sum()))
    return sim, loss / (S * U)


def test_ge2e_loss_matches_loop_reference():
    torch.manual_seed(1)
    e = torch.nn.functional.normalize(torch.randn(4, 3, 8), dim=2)
    w, b = torch.tensor([7.0]), torch.tensor([-2.5])
    ref_sim, ref_loss = _loop_reference(e, 7.0, -2.5)
    np.testing.assert_allclose(similarity_matrix(e).numpy(), ref_sim, atol=1e-5)
    loss, eer = ge2e_loss(e, w, b)
    assert float(loss) == pytest.approx(ref_loss, rel=1e-5)
    assert 0.0 <= eer <= 1.0
    # w is clamped at 1e-6: a negative w behaves like 1e-6.
    l_neg, _ = ge2e_loss(e, torch.tensor([-3.0]), b)
    l_eps, _ = ge2e_loss(e, torch.tensor([1e-6]), b)
    assert float(l_neg) == pytest.approx(float(l_eps), rel=1e-6)


def test_ge2e_loss_is_low_for_clustered_embeddings():
    torch.manual_seed(2)
    centers = torch.nn.functional.normalize(torch.randn(5, 1, 16), dim=2)
    tight = centers + 0.01 * torch.randn(5, 4, 16)
    loss, eer = ge2e_loss(tight, torch.tensor([10.0]), torch.tensor([-5.0]))
    rand_loss, _ = ge2e_loss(torch.randn(5, 4, 16), torch.tensor([10.0]), torch.tensor([-5.0]))
    assert eer == 0.0
    assert float(loss) < 0.05 < float(rand_loss)
    with pytest.raises(OptionsError):
        ge2e_loss(torch.randn(1, 4, 16), torch.tensor([10.0]), torch.tensor([-5.0]))


def test_train_step_scales_similarity_grads_and_clips():
    torch.manual_seed(3)
    dims = EncoderDims(n_mels=40, hidden=16, n_layers=1, embed=8)
    model, ref = SpeakerEncoder(dims), SpeakerEncoder(dims)
    ref.load_state_dict(model.state_dict())
    batch = 5.0 * torch.randn(4 * 3, 20, 40)  # large inputs: large gradients, clipping engaged
    # Reference: plain backward, then the rules by hand, then an SGD step of lr 1.
    loss, _ = ge2e_loss(ref(batch).reshape(4, 3, -1), ref.similarity_weight, ref.similarity_bias)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in ref.named_parameters()}
    grads["similarity_weight"] *= 0.01
    grads["similarity_bias"] *= 0.01
    total = torch.sqrt(sum((g**2).sum() for g in grads.values()))
    scale = min(1.0, GRAD_CLIP_NORM / (float(total) + 1e-6))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    train_step(model, torch.optim.SGD(model.parameters(), lr=1.0), batch, 4, 3)
    for n, p in model.named_parameters():
        torch.testing.assert_close(before[n] - p.detach(), scale * grads[n], rtol=1e-4, atol=1e-6)
    assert scale < 1.0  # the clip was exercised


# ---- dataset readers -------------------------------------------------------------------------
def _tone(path, f0: float, seconds: float = 1.0) -> None:
    t = np.arange(int(16000 * seconds)) / 16000
    save_wav(path, (0.3 * np.sin(2 * np.pi * f0 * t)).astype(np.float32))


def test_librispeech_voxceleb_and_flat_layouts(tmp_path):
    libri = tmp_path / "libri"
    for spk, chap in (("19", "198"), ("26", "495")):
        d = libri / spk / chap
        d.mkdir(parents=True)
        lines = []
        for u in range(2):
            _tone(d / f"{spk}-{chap}-{u:04d}.wav", 200 + u)
            lines.append(f"{spk}-{chap}-{u:04d} HELLO WORLD {u}")
        (d / f"{spk}-{chap}.trans.txt").write_text("\n".join(lines) + "\n")
    files = speaker_files(libri)
    assert sorted(files) == ["19", "26"] and all(len(v) == 2 for v in files.values())
    items = transcribed_items(libri)
    assert len(items) == 4
    assert {(i.audio.name, i.text, i.speaker) for i in items if i.speaker == "26"} == {
        ("26-495-0000.wav", "HELLO WORLD 0", "26"), ("26-495-0001.wav", "HELLO WORLD 1", "26")}

    vox = tmp_path / "vox"
    for spk in ("id10001", "id10002"):
        for video in ("1zcIwhmdeo4", "7gWzIy6yIIk"):
            (vox / spk / video).mkdir(parents=True)
            _tone(vox / spk / video / "00001.wav", 300)
    files = speaker_files(vox)
    assert sorted(files) == ["id10001", "id10002"] and all(len(v) == 2 for v in files.values())
    with pytest.raises(InputShapeError):
        transcribed_items(vox)

    flat = tmp_path / "flat"
    (flat / "alice").mkdir(parents=True)
    (flat / "bob").mkdir()
    _tone(flat / "alice" / "a.wav", 220)
    (flat / "alice" / "a.txt").write_text("  Hi   there \n")
    _tone(flat / "alice" / "b.wav", 230)  # no transcript: skipped by transcribed_items
    (flat / "alice" / "notes.md").write_text("not audio")
    _tone(flat / "bob" / "c.wav", 240)
    assert {k: [p.name for p in v] for k, v in speaker_files(flat).items()} == {"alice": ["a.wav", "b.wav"], "bob": ["c.wav"]}
    assert [(i.audio.name, i.text) for i in transcribed_items(flat)] == [("a.wav", "Hi there")]
    with pytest.raises(InputShapeError):
        speaker_files(tmp_path / "missing")


def test_batch_sampler_is_speaker_major_and_reproducible():
    # Each speaker's mels hold its own constant value: a crop tells where it came from.
    mels = {f"s{k}": [np.full((50 + 10 * u, 40), k, np.float32) for u in range(4)] for k in range(6)}
    mels["short"] = [np.zeros((10, 40), np.float32)] * 4  # too short for 30-frame partials: unused
    sampler = GE2EBatchSampler(mels, speakers_per_batch=3, utterances_per_speaker=2, partial_frames=30, seed=5)
    assert "short" not in sampler.speakers
    batch = sampler.sample(7)
    assert batch.shape == (6, 30, 40) and batch.dtype == np.float32
    per_row = batch[:, 0, 0]
    assert np.all(batch == per_row[:, None, None])
    assert per_row[0] == per_row[1] and per_row[2] == per_row[3] and len(set(per_row[::2])) == 3
    np.testing.assert_array_equal(sampler.sample(7), batch)
    with pytest.raises(OptionsError):
        GE2EBatchSampler(mels, speakers_per_batch=7, utterances_per_speaker=2, partial_frames=30)


# ---- training runs ---------------------------------------------------------------------------
TINY = EncoderDims(n_mels=40, hidden=32, n_layers=1, embed=32)
PARTIAL = 100  # 1 s partials: every generated sentence is longer than that after VAD trimming


@pytest.fixture(scope="module")
def voices(tmp_path_factory):
    """Train (3 sentences) and held-out (3 other sentences) folders of the calibration voices."""
    root = tmp_path_factory.mktemp("voices")
    train = write_voice_folder(root / "train", sentences=CALIBRATION_SENTENCES[:3])
    held = write_voice_folder(root / "held", sentences=CALIBRATION_SENTENCES[3:])
    return train, held


@pytest.mark.slow
def test_tiny_encoder_learns_to_separate_voices(voices, tmp_path):
    """Three seeds, judged by the median: one seed of a 1-layer, 32-unit encoder on 27 utterances is a
    coin toss near the bar (seed 0 passed on the earlier, AVX2 machines and gave held-out EER 0.33 on an
    AVX-512 one, whose kernels round differently; seeds 1 and 2 there: 0.22 and 0.15)."""
    train, held = voices
    n_spk = len(CALIBRATION_VOICES)
    opts = EmbedOptions(partial_frames=PARTIAL)
    untrained = SpeakerEncoder(TINY).eval()
    before = eval_encoder(untrained, held, options=opts)
    eers = []
    for seed in range(3):
        path = train_encoder(train, tmp_path / f"run{seed}", steps=100, speakers_per_batch=n_spk, utterances_per_speaker=3,
                             dims=TINY, lr=0.05, seed=seed, progress=False, checkpoint_every=50, partial_frames=PARTIAL)
        log = read_log(tmp_path / f"run{seed}")
        assert [r["step"] for r in log] == list(range(1, 101))
        # Chance level for 9 speakers is ln 9 = 2.2; every seed must end at least 30 % below it
        # (measured: 0.61-0.62 x chance for seeds 0, 1, 3; 0.37-0.44 x for 2 and 4)
        last = np.mean([r["loss"] for r in log[-10:]])
        assert last < 0.7 * np.log(n_spk), (seed, last)
        ckpt = read_checkpoint(path, expect_kind="encoder")
        assert ckpt.format == "rtclone" and ckpt.dims == TINY and ckpt.meta["step"] == 100
        after = eval_encoder(load_model(path, "encoder"), held, options=opts)
        assert after["n_speakers"] == n_spk and after["n_utterances"] == 3 * n_spk
        eers.append(after["eer"])
    # Untrained: near chance (~0.45); trained: well below 0.3 on sentences it never heard.
    assert float(np.median(eers)) < 0.3 < before["eer"], (before["eer"], eers)


def test_resume_continues_exactly(voices, tmp_path):
    train, _ = voices
    kw = dict(speakers_per_batch=4, utterances_per_speaker=2, dims=EncoderDims(n_mels=40, hidden=8, n_layers=1, embed=8),
              lr=0.01, seed=1, progress=False, partial_frames=PARTIAL)
    straight = train_encoder(train, tmp_path / "a", steps=6, checkpoint_every=100, **kw)
    train_encoder(train, tmp_path / "b", steps=3, checkpoint_every=100, **kw)
    resumed = train_encoder(train, tmp_path / "b", steps=6, checkpoint_every=100, **kw)
    a, b = read_checkpoint(straight), read_checkpoint(resumed)
    assert b.meta["step"] == 6
    for k, v in a.model_state.items():
        torch.testing.assert_close(b.model_state[k], v, rtol=0, atol=1e-6)
    assert [r["step"] for r in read_log(tmp_path / "b")] == list(range(1, 7))
    with pytest.raises(OptionsError):
        train_encoder(train, tmp_path / "b", steps=8, **{**kw, "dims": TINY})
