"""Synthesizer training: losses, schedules, overfitting, resume, DDP (2 CPU processes), GTA (data preparation: test_prepare_synthesizer.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rtclone import checkpoints
from rtclone.errors import InputShapeError, OptionsError
from rtclone.synthesizer import SynthesizerDims, Tacotron
from rtclone.train.synthesizer import (SynthDataset, alignment_scores, bucket_batches, collate, export_gta,
                                       guided_attention_loss, parse_r_schedule, r_at, taco_loss, train_synthesizer)
from synth_data import encoder, prepared  # noqa: F401 - module-scoped fixtures


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one torch thread for the module


def _alignment(model: Tacotron, ds: SynthDataset, r: int) -> dict[str, float]:
    """Mean alignment scores of every item under teacher forcing (eval mode, seeded dropout)."""
    model.eval()
    model.set_r(r)
    b = collate(ds, range(len(ds)), r)
    with torch.no_grad():
        _, _, attn, _ = model(b["chars"], b["mels"], b["embeds"], torch.Generator().manual_seed(0))
    per = [alignment_scores(attn[i, :-(-int(b["mel_lens"][i]) // r), :int(b["text_lens"][i])].numpy()) for i in range(len(ds))]
    return {k: float(np.mean([p[k] for p in per])) for k in per[0]}


def test_guided_attention_prefers_the_diagonal():
    S, N = 20, 10
    diag = torch.zeros(1, S, N)
    diag[0, torch.arange(S), torch.arange(S) * N // S] = 1.0
    anti = diag.flip(2)
    lens = (torch.tensor([N]), torch.tensor([S]))
    on, off = float(guided_attention_loss(diag, *lens)), float(guided_attention_loss(anti, *lens))
    # mean over the S × N cells; rows sum to 1, so the largest possible value is ~1 / N = 0.1
    assert on < 0.005 and off > 0.06 and off > 10 * on
    assert alignment_scores(diag[0].numpy())["diagonal"] > 0.99 and alignment_scores(anti[0].numpy())["diagonal"] < -0.99


def test_r_schedule():
    sched = [(0, 7), (100, 4), (300, 2)]
    assert [r_at(s, sched) for s in (0, 99, 100, 299, 300, 10_000)] == [7, 7, 4, 4, 2, 2]
    assert parse_r_schedule("0:7,100:4,300:2") == sched
    with pytest.raises(OptionsError):
        parse_r_schedule("0-7")
    with pytest.raises(OptionsError):
        train_synthesizer("unused", "unused", dims=SynthesizerDims.tiny(), steps=1, r_schedule=[(5, 2)])


def test_scheduled_sampling_option(prepared, tmp_path):
    from rtclone.cli import main

    assert main(["train", "synthesizer", str(prepared), str(tmp_path), "--dims", "tiny", "--steps", "2",
                 "--batch-size", "3", "--checkpoint-every", "2", "--own-frames", "0.5", "--json"]) == 0
    logged = json.loads((tmp_path / "log.jsonl").read_text().splitlines()[-1])
    assert logged["step"] == 2 and np.isfinite(logged["mel"])
    assert logged["own_frames"] == 0.5  # the log says how the checkpoint was trained
    kw = dict(dims=SynthesizerDims.tiny(), steps=1, batch_size=3, seed=0, resume=False)
    forced = train_synthesizer(prepared, tmp_path / "tf", **kw)["losses"]
    assert train_synthesizer(prepared, tmp_path / "tf2", **kw)["losses"] == forced  # a seeded step repeats
    assert train_synthesizer(prepared, tmp_path / "free", own_frames=1.0, **kw)["losses"] != forced  # the option reaches the model
    for bad in (-0.1, 1.5):
        with pytest.raises(OptionsError, match="own_frames"):
            train_synthesizer(prepared, tmp_path / "bad", dims=SynthesizerDims.tiny(), steps=1, own_frames=bad)


def test_parallel_scheduled_sampling_and_its_ramp(prepared, tmp_path):
    """--own-parallel reaches the model; --own-ramp A:B scales --own-frames linearly from 0 at step A
    to its value at B, by the checkpoint's step (a resumed run goes on along the ramp); both are logged."""
    from rtclone.cli import main
    from rtclone.train.synthesizer import _ramp, parse_ramp

    assert [_ramp(s, (10, 20)) for s in (0, 10, 15, 20, 99)] == [0.0, 0.0, 0.5, 1.0, 1.0] and _ramp(3, None) == 1.0
    assert parse_ramp("18400:19000") == (18400, 19000) and parse_ramp(None) is None
    for bad in ("5", "a:b", "1:2:3"):
        with pytest.raises(OptionsError, match="START:END"):
            parse_ramp(bad)
    with pytest.raises(OptionsError, match="own_ramp"):
        train_synthesizer(prepared, tmp_path / "bad", dims=SynthesizerDims.tiny(), steps=1, own_ramp=(5, 5))
    args = ["train", "synthesizer", str(prepared), str(tmp_path / "run"), "--dims", "tiny", "--batch-size", "3",
            "--checkpoint-every", "2", "--own-frames", "0.8", "--own-parallel", "--own-ramp", "0:4", "--json"]
    assert main([*args, "--steps", "2"]) == 0
    assert main([*args, "--steps", "4"]) == 0  # resumed at step 2
    rows = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    # the probability of the checkpoint's last step: steps 1 and 3 ran at 0.8 * 1/4 and 0.8 * 3/4
    assert [(r["step"], r["own_frames"], r["own_parallel"]) for r in rows] == [(2, pytest.approx(0.2), True),
                                                                              (4, pytest.approx(0.6), True)]
    # the torchrun entry point takes the same training options and trains the same run
    from rtclone.train.synthesizer import main as torchrun_main

    assert torchrun_main([*args[2:3], str(tmp_path / "run2"), *args[4:-1], "--steps", "2"]) == 0
    twin = json.loads((tmp_path / "run2" / "log.jsonl").read_text().splitlines()[0])
    assert twin == rows[0]
    kw = dict(dims=SynthesizerDims.tiny(), steps=1, batch_size=3, seed=0, resume=False)
    forced = train_synthesizer(prepared, tmp_path / "tf", **kw)["losses"]
    sequential = train_synthesizer(prepared, tmp_path / "seq", own_frames=1.0, **kw)["losses"]
    parallel = train_synthesizer(prepared, tmp_path / "par", own_frames=1.0, own_parallel=True, **kw)["losses"]
    assert len({forced[0], sequential[0], parallel[0]}) == 3


def test_zoneout_and_bf16_lstm_options(prepared, tmp_path, monkeypatch):
    """--zoneout and --bf16-lstm reach the decoder (other losses than a plain step), are logged with
    the checkpoint, and a bad zoneout is refused."""
    from rtclone.cli import main

    assert main(["train", "synthesizer", str(prepared), str(tmp_path), "--dims", "tiny", "--steps", "2", "--batch-size", "3",
                 "--checkpoint-every", "2", "--zoneout", "0.1", "--bf16-lstm", "--json"]) == 0
    logged = json.loads((tmp_path / "log.jsonl").read_text().splitlines()[-1])
    assert logged["zoneout"] == 0.1 and logged["bf16_lstm"] is True and np.isfinite(logged["mel"])
    kw = dict(dims=SynthesizerDims.tiny(), steps=1, batch_size=3, seed=0, resume=False)
    plain = train_synthesizer(prepared, tmp_path / "plain", **kw)["losses"]
    assert train_synthesizer(prepared, tmp_path / "zone", zoneout=0.5, **kw)["losses"] != plain
    for bad in (-0.1, 1.0):
        with pytest.raises(OptionsError, match="zoneout"):
            train_synthesizer(prepared, tmp_path / "bad", zoneout=bad, **kw)
    monkeypatch.setenv("RTCLONE_FUSED_LSTM", "0")
    with pytest.warns(UserWarning, match="--bf16-lstm has no effect"):
        train_synthesizer(prepared, tmp_path / "nobf16", bf16_lstm=True, **kw)


@pytest.mark.slow
def test_tiny_model_overfits_and_aligns(prepared, tmp_path):
    """150 steps on 3 utterances: the loss drops ≥ 5× (measured 9.4×) and the alignment sharpens
    (focus ≥ 0.2 and ≥ 2.5× the untrained model's; measured 0.078 → 0.302) along a diagonal
    (peak-vs-step correlation ≥ 0.75; measured −0.34 → 0.89). ~30 s of CPU on a busy core."""
    ds = SynthDataset(prepared)
    dims = SynthesizerDims.tiny()
    torch.manual_seed(0)
    before = _alignment(Tacotron(dims), ds, r=4)
    res = train_synthesizer(prepared, tmp_path, dims=dims, steps=150, batch_size=3, r_schedule=[(0, 4)], lr=3e-3,
                            guided_attention=2.0, seed=0, checkpoint_every=150)
    losses = res["losses"]
    assert len(losses) == 150
    assert losses[0] / np.mean(losses[-5:]) >= 5.0
    after = _alignment(checkpoints.load_model(tmp_path / "synthesizer.pt", "synthesizer"), ds, r=4)
    assert after["focus"] >= max(0.2, 2.5 * before["focus"]), (before, after)
    assert after["diagonal"] >= 0.75, (before, after)
    assert (tmp_path / "alignments" / "step-000150.png").stat().st_size > 1000


@pytest.fixture(scope="module")
def short_run(prepared, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run")
    res = train_synthesizer(prepared, out, dims=SynthesizerDims.tiny(), steps=2, batch_size=2, checkpoint_every=2, seed=0)
    assert res["step"] == 2 and len(res["losses"]) == 2
    return out


def test_resume_continues_step_and_optimizer(prepared, short_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(short_run, run)
    res = train_synthesizer(prepared, run, dims=SynthesizerDims.small(), steps=4, batch_size=2, checkpoint_every=2)
    assert res["step"] == 4 and len(res["losses"]) == 2  # two more steps, not four
    ckpt = checkpoints.read_checkpoint(run / "synthesizer.pt")
    assert ckpt.dims == SynthesizerDims.tiny()  # the checkpoint's dims win over the argument
    assert int(ckpt.model_state["step"]) == 4 and ckpt.meta["step"] == 4
    opt = torch.load(run / "optimizer.pt", weights_only=True)["optimizer"]
    assert {float(s["step"]) for s in opt["state"].values()} == {4.0}  # Adam kept counting
    assert sorted(p.name for p in (run / "alignments").iterdir()) == ["step-000002.png", "step-000004.png"]
    fresh = train_synthesizer(prepared, run, dims=SynthesizerDims.tiny(), steps=1, batch_size=2, resume=False)
    assert fresh["step"] == 1


def test_resume_continues_the_epoch_order(prepared, tmp_path, monkeypatch):
    """Steps 1-5 then 6-8 see the same batches as one run of 8 steps (3 items, batch 1: 3 per epoch)."""
    import rtclone.train.synthesizer as ts

    seen: list[list[int]] = []
    real = ts.collate
    monkeypatch.setattr(ts, "collate", lambda ds, idx, r: (seen.append(list(map(int, idx))), real(ds, idx, r))[1])
    kw = dict(dims=SynthesizerDims.tiny(), batch_size=1, checkpoint_every=100, seed=5)
    train_synthesizer(prepared, tmp_path / "one", steps=8, **kw)
    straight, seen[:] = list(seen), []
    train_synthesizer(prepared, tmp_path / "two", steps=5, **kw)
    train_synthesizer(prepared, tmp_path / "two", steps=8, **kw)
    assert seen == straight and len(straight) == 8
    lengths = [it["frames"] for it in SynthDataset(prepared).items]
    epochs = [b for e in range(3) for b in bucket_batches(lengths, 1, np.random.default_rng([5, e]))]
    assert straight == epochs[:8]  # epoch e is ordered by (seed, e)


def test_export_gta(prepared, short_run, tmp_path):
    res = export_gta(short_run / "synthesizer.pt", prepared, tmp_path, batch_size=1, seed=3)
    assert res["items"] == 3
    meta = json.loads((tmp_path / "metadata.json").read_text())
    ds = SynthDataset(prepared)
    model = checkpoints.load_model(short_run / "synthesizer.pt", "synthesizer")
    for row in meta["items"]:
        i = next(k for k, it in enumerate(ds.items) if it["id"] == row["id"])
        gta = np.load(tmp_path / row["mel"])
        assert gta.shape == (80, ds.items[i]["frames"]) == (80, row["frames"])
        assert np.load(row["audio"]).shape == (ds.items[i]["samples"],)
    # reference: the shortest item alone with the same seed, computed here
    first = meta["items"][0]
    i = next(k for k, it in enumerate(ds.items) if it["id"] == first["id"])
    b = collate(ds, [i], model.r)
    with torch.no_grad():
        mel_out, _, _, _ = model(b["chars"], b["mels"], b["embeds"], torch.Generator().manual_seed(3))
        ref = model.postnet_mel(mel_out[:, :, :first["frames"]])[0].numpy()
    np.testing.assert_allclose(np.load(tmp_path / first["mel"]), ref, atol=1e-5)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_ddp_two_cpu_processes(prepared, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc_per_node", "2",
           "-m", "rtclone.train.synthesizer", str(prepared), str(tmp_path), "--dims", "tiny", "--steps", "2",
           "--batch-size", "1", "--checkpoint-every", "2", "--no-resume"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=200, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["world_size"] == 2 and res["step"] == 2
    ckpt = checkpoints.read_checkpoint(tmp_path / "synthesizer.pt")
    assert int(ckpt.model_state["step"]) == 2
    torch.manual_seed(0)
    init = Tacotron(SynthesizerDims.tiny()).state_dict()
    assert not torch.equal(init["decoder.rnn_input.weight"], ckpt.model_state["decoder.rnn_input.weight"])


def test_validation_loss_is_repeatable_and_tracks_training(prepared, short_run, tmp_path):
    from rtclone.train.synthesizer import validation_loss

    ds = SynthDataset(prepared)
    model = checkpoints.load_model(short_run / "synthesizer.pt", "synthesizer").train()
    bn = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    a = validation_loss(model, ds, 2.0, items=2)
    assert set(a) == {"val_mel", "val_post", "val_stop", "val_guided"} and all(v > 0 for v in a.values())
    assert validation_loss(model, ds, 2.0, items=2) == a  # same items, same dropout masks
    assert model.training and all(torch.equal(v, model.state_dict()[k]) for k, v in bn.items())  # BatchNorm untouched
    # the loss of the 2 picked items (first and last) equals taco_loss on them in eval mode, with the same seed
    model.eval()
    picked = sorted([0, len(ds) - 1], key=lambda i: ds.items[i]["frames"])
    _, parts, _ = taco_loss(model, collate(ds, picked, model.r), 2.0, torch.Generator().manual_seed(0))
    assert a == pytest.approx({f"val_{k}": v for k, v in parts.items()}, rel=1e-5)
    # training logs it at each checkpoint and it falls as the model learns these items
    res = train_synthesizer(prepared, tmp_path, dims=SynthesizerDims.tiny(), steps=40, batch_size=3,
                            r_schedule=[(0, 4)], lr=3e-3, seed=0, checkpoint_every=20, val_dir=prepared)
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [20, 40] and res["step"] == 40
    assert log[1]["val_mel"] < log[0]["val_mel"]


def test_widened_run_resumes_training(prepared, short_run, tmp_path, capsys):
    from rtclone.train.widen import main as widen_main

    wide = tmp_path / "wide"
    assert widen_main([str(short_run), str(wide), "--lstm-dims", "96"]) == 0
    done = json.loads(capsys.readouterr().out)
    assert done["step"] == 2 and done["lstm_dims"] == [64, 96] and done["optimizer"] is True
    assert done["values"][1] > done["values"][0]
    assert json.loads((wide / "log.jsonl").read_text().splitlines()[-1]) == {"step": 2, "widened": {"lstm_dims": [64, 96]}}
    res = train_synthesizer(prepared, wide, steps=3, batch_size=2, checkpoint_every=1)
    assert res["step"] == 3 and len(res["losses"]) == 1
    ckpt = checkpoints.read_checkpoint(wide / "synthesizer.pt")
    assert ckpt.dims.lstm_dims == 96 and ckpt.meta["step"] == 3
    opt = torch.load(wide / "optimizer.pt", weights_only=True)["optimizer"]
    assert {float(s["step"]) for s in opt["state"].values()} == {3.0}  # Adam went on counting from the narrow run
    with pytest.raises(OptionsError, match="already holds"):
        widen_main([str(short_run), str(wide), "--lstm-dims", "96"])


def test_packed_run_resumes_with_half_size_moments(prepared, short_run, tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    try:
        from pack_run import main as pack_main, pack_run, unpack_run
    finally:
        sys.path.pop(0)
    packed = tmp_path / "packed"
    done = pack_run(short_run, packed)  # tiny files: nothing to cut
    assert sorted(done) == ["log.jsonl", "optimizer.pt", "step-000002.png", "synthesizer.pt"]
    full = torch.load(short_run / "optimizer.pt", weights_only=True)["optimizer"]["state"]
    half = torch.load(packed / "optimizer.pt", weights_only=True)["optimizer"]["state"]
    for i, st in full.items():
        assert half[i]["exp_avg_sq"].dtype == torch.bfloat16 and half[i]["step"] == st["step"]
        torch.testing.assert_close(half[i]["exp_avg"].float(), st["exp_avg"], rtol=1e-2, atol=1e-12)
    assert done["optimizer.pt"] < 0.6 * (short_run / "optimizer.pt").stat().st_size
    # with a small part limit the big files are cut; nothing written exceeds it; unpacking joins them exactly
    limit = 0.1  # MiB
    cut = tmp_path / "cut"
    assert pack_main([str(short_run), str(cut), "--part-mib", str(limit)]) == 0
    sizes = {p.name: p.stat().st_size for p in cut.iterdir()}
    assert "synthesizer.pt" not in sizes and "synthesizer.pt.part-01" in sizes and "parts.json" in sizes
    assert max(sizes.values()) <= limit * 2**20
    run = tmp_path / "run"
    assert pack_main(["--unpack", str(cut), str(run)]) == 0
    assert (run / "synthesizer.pt").read_bytes() == (short_run / "synthesizer.pt").read_bytes()
    assert (run / "optimizer.pt").read_bytes() == (packed / "optimizer.pt").read_bytes()
    res = train_synthesizer(prepared, run, steps=3, batch_size=2, checkpoint_every=1)
    assert res["step"] == 3
    resumed = torch.load(run / "optimizer.pt", weights_only=True)["optimizer"]["state"]
    assert all(st["exp_avg"].dtype == torch.float32 and float(st["step"]) == 3.0 for st in resumed.values())
    # a damaged part is refused, not joined into a broken checkpoint
    part = cut / "synthesizer.pt.part-00"
    part.write_bytes(part.read_bytes()[:-1] + b"x")
    with pytest.raises(ValueError, match="do not join"):
        unpack_run(cut, tmp_path / "run2")


def test_gta_export_feeds_vocoder_training(prepared, short_run, tmp_path):
    from rtclone import audio
    from rtclone.train.vocoder import prepare_utterance, train_vocoder, vocoder_pairs
    from rtclone.vocoder import VocoderDims

    export_gta(short_run / "synthesizer.pt", prepared, tmp_path / "gta", batch_size=1, seed=3)
    pairs = vocoder_pairs(tmp_path / "gta")
    ds = SynthDataset(prepared)
    assert sorted(w.name for w, _ in pairs) == sorted(f"{it['id']}.npy" for it in ds.items)
    dims = VocoderDims(rnn_dims=16, fc_dims=16, res_blocks=1, compute_dims=8, res_out_dims=16)
    for wav_path, mel_path in pairs:
        assert wav_path.parent == (prepared / "audio").resolve() and mel_path.stem == wav_path.stem
        utt = prepare_utterance(wav_path, mel_path, dims)  # the trimmed audio the GTA mel was aligned to
        wav, mel = np.load(wav_path), np.load(mel_path)
        assert np.array_equal(utt.mel, mel) and utt.target.shape == (mel.shape[1] * 200,)
        n = min(len(wav), utt.target.size)
        assert np.array_equal(utt.target[:n], audio.mulaw_encode(np.clip(audio.pre_emphasis(wav), -1, 1), 9)[:n])
    res = train_vocoder(pairs, tmp_path / "voc", dims=dims, steps=1, batch_size=2, seq_len=1, progress=False)
    assert res["step"] == 1 and np.isfinite(res["losses"][0])
    with pytest.raises(OptionsError, match="GTA export"):
        vocoder_pairs(tmp_path / "gta", tmp_path / "gta" / "gta")
    meta = json.loads((tmp_path / "gta" / "metadata.json").read_text())
    meta["items"][0]["audio"] = str(tmp_path / "gone.npy")
    (tmp_path / "gta" / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(InputShapeError, match="missing file"):
        vocoder_pairs(tmp_path / "gta")
    del meta["items"][0]["audio"]
    (tmp_path / "gta" / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(InputShapeError, match="an item without"):
        vocoder_pairs(tmp_path / "gta")


def test_lr_decay_is_geometric_resumes_by_step_and_reaches_adam(prepared, tmp_path):
    """--lr-decay A:B --lr-final F: the rate falls geometrically from --lr at A to F at B and stays at F;
    a resumed run picks the rate of its checkpoint's step; the optimizer saved with the checkpoint holds
    the rate of its last step, which the log records."""
    import torch

    from rtclone.cli import main
    from rtclone.train.synthesizer import lr_at

    assert [lr_at(s, 1e-3, (10, 20), 1e-5) for s in (0, 10, 15, 20, 50)] == pytest.approx([1e-3, 1e-3, 1e-4, 1e-5, 1e-5])
    assert lr_at(7, 2e-4, None, None) == 2e-4
    for decay, final in (((5, 5), 1e-5), ((0, 4), None), (None, 1e-5), ((0, 4), 2e-3), ((0, 4), 0.0)):
        with pytest.raises(OptionsError, match="lr_decay"):
            train_synthesizer(prepared, tmp_path / "bad", dims=SynthesizerDims.tiny(), steps=1, lr=1e-3,
                              lr_decay=decay, lr_final=final)
    args = ["train", "synthesizer", str(prepared), str(tmp_path / "run"), "--dims", "tiny", "--batch-size", "3",
            "--checkpoint-every", "2", "--lr", "1e-3", "--lr-decay", "0:4", "--lr-final", "1e-5", "--json"]
    assert main([*args, "--steps", "2"]) == 0
    assert main([*args, "--steps", "4"]) == 0  # resumed at step 2
    rows = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    # steps 1 and 3 (0-based: the last of each checkpoint) ran at 1e-3 * 0.01 ** (1/4) and ** (3/4)
    assert [(r["step"], r["lr"]) for r in rows] == [(2, pytest.approx(1e-3 * 0.01**0.25)), (4, pytest.approx(1e-3 * 0.01**0.75))]
    saved = torch.load(tmp_path / "run" / "optimizer.pt", weights_only=True)["optimizer"]
    assert saved["param_groups"][0]["lr"] == pytest.approx(1e-3 * 0.01**0.75)


def test_training_with_the_speaker_loss_logs_it_and_changes_the_steps(prepared, tmp_path):
    from rtclone.cli import main

    kw = dict(dims=SynthesizerDims.tiny(), steps=2, batch_size=3, seed=0, resume=False, checkpoint_every=2, val_dir=prepared)
    plain = train_synthesizer(prepared, tmp_path / "plain", **kw)["losses"]
    spk = train_synthesizer(prepared, tmp_path / "spk", speaker_loss=0.5, **kw)["losses"]
    assert spk[0] > plain[0]  # the first step's loss includes 0.5 x (1 - cos) > 0, the rest is the same model
    assert spk[1] != plain[1]  # and the update differed
    log = json.loads((tmp_path / "spk" / "log.jsonl").read_text().splitlines()[-1])
    assert log["speaker_weight"] == 0.5 and 0 < log["speaker"] <= 1.0 and 0 < log["val_speaker"] <= 1.0
    assert "speaker" not in json.loads((tmp_path / "plain" / "log.jsonl").read_text().splitlines()[-1])
    for bad in (-0.1, float("nan")):
        with pytest.raises(OptionsError, match="speaker_loss"):
            train_synthesizer(prepared, tmp_path / "bad", speaker_loss=bad, **kw)
    # free-running form: judged on the first frames decoded from the model's own frames, logged as such
    free = train_synthesizer(prepared, tmp_path / "free", speaker_loss=0.5, speaker_free_run=16, **kw)["losses"]
    assert free[0] > plain[0] and free[0] != spk[0]
    log = json.loads((tmp_path / "free" / "log.jsonl").read_text().splitlines()[-1])
    assert log["speaker_free_run"] == 16 and 0 < log["speaker"] <= 1.0 and 0 < log["val_speaker"] <= 1.0
    for bad in (-1, 2.5, 1001):
        with pytest.raises(OptionsError, match="speaker_free_run"):
            train_synthesizer(prepared, tmp_path / "bad", speaker_loss=0.5, speaker_free_run=bad, **kw)
    assert main(["train", "synthesizer", str(prepared), str(tmp_path / "cli"), "--dims", "tiny", "--steps", "1",
                 "--batch-size", "3", "--checkpoint-every", "1", "--speaker-loss", "0.25", "--speaker-free-run", "8", "--json"]) == 0
    logged = json.loads((tmp_path / "cli" / "log.jsonl").read_text())
    assert logged["speaker_weight"] == 0.25 and logged["speaker_free_run"] == 8


def test_validation_with_the_speaker_loss_keeps_the_other_parts_and_repeats(prepared):
    from rtclone.train.speaker_loss import EncoderMelFromSynth, SpeakerLoss, frozen_encoder
    from rtclone.train.synthesizer import validation_loss

    torch.manual_seed(0)
    model = Tacotron(SynthesizerDims.tiny())
    ds = SynthDataset(prepared)
    spk = SpeakerLoss(0.5, frozen_encoder(), EncoderMelFromSynth())
    plain, with_spk = validation_loss(model, ds, 2.0, items=3), validation_loss(model, ds, 2.0, items=3, speaker=spk)
    assert {k: v for k, v in with_spk.items() if k != "val_speaker"} == plain  # its windows take no dropout draws
    assert 0 < with_spk["val_speaker"] <= 0.5 * 2
    assert validation_loss(model, ds, 2.0, items=3, speaker=spk) == with_spk
