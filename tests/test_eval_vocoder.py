"""rtclone eval vocoder: a vocoder against Griffin-Lim on a prepared set's true (and GTA) mels."""

from __future__ import annotations

import functools
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conftest import make_speech
from rtclone import audio
from rtclone.asr import Transcriber, word_error_rate
from rtclone.checkpoints import load_model, save_model
from rtclone.cli import main
from rtclone.errors import InputShapeError, OptionsError
from rtclone.eval_vocoder import VocoderEvalOptions, evaluate_vocoder, format_vocoder_table
from rtclone.vocoder import VocoderDims, WaveRNN

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one torch thread for the module

TEXTS = {"a-1": "The cat sat on the mat.", "b-2": "Green apples are sweet."}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("prepared")
    (root / "mels").mkdir()
    (root / "audio").mkdir()
    items = []
    for uid, text in TEXTS.items():
        wav = make_speech(text, "kal16")
        mel = audio.synth_mel(wav)
        np.save(root / "mels" / f"{uid}.npy", mel)
        np.save(root / "audio" / f"{uid}.npy", wav)
        items.append({"id": uid, "speaker": uid[0], "text": text, "frames": mel.shape[1], "samples": len(wav)})
    (root / "metadata.json").write_text(json.dumps({"items": items}))
    return root


@pytest.fixture(scope="module")
def random_vocoder():
    torch.manual_seed(0)
    return WaveRNN(VocoderDims(rnn_dims=32, fc_dims=32, res_blocks=1, compute_dims=16, res_out_dims=32)).eval()


def test_vocoder_against_griffin_lim(prepared, random_vocoder, tmp_path):
    asr = Transcriber()
    report = evaluate_vocoder(random_vocoder, prepared, options=VocoderEvalOptions(items=2), transcriber=asr)
    s = report["summary"]
    assert set(s) == {"recording", "baseline_gt", "vocoder_gt"} and report["options"]["items"] == 2
    # the recordings' row is pocketsphinx on the audio itself, and their mel is the reference mel
    want = sum((word_error_rate(t, asr.transcribe(np.load(prepared / "audio" / f"{u}.npy"))) for u, t in TEXTS.items()),
               start=word_error_rate("", ""))
    assert (s["recording"]["errors"], s["recording"]["words"]) == (want.errors, want.words) == (want.errors, 10)
    assert s["recording"]["mel_l1"] < 1e-4
    # Griffin-Lim on the true mels stays close to them and is understood; a random WaveRNN is neither
    assert s["baseline_gt"]["mel_l1"] < 0.5 < s["vocoder_gt"]["mel_l1"]
    assert s["baseline_gt"]["wer"] <= 0.5 and s["vocoder_gt"]["wer"] >= 0.8
    # the voice: the recording against itself is 1; Griffin-Lim keeps most of it, a random WaveRNN little
    assert s["recording"]["similarity"] > 0.9999
    assert s["baseline_gt"]["similarity"] > 0.85 > 0.6 > s["vocoder_gt"]["similarity"]
    assert sum(r["vocoder_gt"] for r in report["items"]) == s["vocoder_gt"]["errors"]
    assert "vocoder_gt" in format_vocoder_table(report)

    # a GTA export holding the true mels gives the same rows for its sources
    (tmp_path / "gta").mkdir()
    for uid in TEXTS:
        np.save(tmp_path / "gta" / f"{uid}.npy", np.load(prepared / "mels" / f"{uid}.npy"))
    rows = [{"id": uid, "mel": f"gta/{uid}.npy", "audio": str(prepared / "audio" / f"{uid}.npy")} for uid in TEXTS]
    (tmp_path / "metadata.json").write_text(json.dumps({"format": "rtclone-gta", "version": 1, "items": rows}))
    with_gta = evaluate_vocoder(random_vocoder, prepared, tmp_path, VocoderEvalOptions(items=2), transcriber=asr)
    g = with_gta["summary"]
    assert g["baseline_gta"] == g["baseline_gt"] == s["baseline_gt"] and g["vocoder_gta"] == g["vocoder_gt"]


def test_postfilter_rows_filter_the_same_outputs(prepared, random_vocoder):
    report = evaluate_vocoder(random_vocoder, prepared, options=VocoderEvalOptions(items=2, postfilter=True))
    s = report["summary"]
    assert {"vocoder_gt", "vocoder_pf_gt"} <= set(s) and report["options"]["postfilter"] is True
    # a random WaveRNN's noise pulled to the mel's band levels: far closer to the mel than unfiltered,
    # yet noise with a speech envelope is still far from the voice that Griffin-Lim keeps
    assert s["vocoder_pf_gt"]["mel_l1"] < 0.5 * s["vocoder_gt"]["mel_l1"]
    assert s["vocoder_pf_gt"]["similarity"] < s["baseline_gt"]["similarity"] - 0.05  # measured 0.86 vs 0.98
    assert s["vocoder_pf_gt"]["words"] == s["vocoder_gt"]["words"]
    # the control is an untrained WaveRNN of the same dims seeded with the eval's seed: here that is the
    # evaluated vocoder itself (the fixture's seed 0), so the two filtered rows agree exactly
    assert s["control_pf_gt"] == s["vocoder_pf_gt"]
    with pytest.raises(OptionsError):
        VocoderEvalOptions(postfilter=1)


def test_an_lpc_vocoder_is_reported_beside_its_untrained_twin(prepared, random_vocoder):
    torch.manual_seed(0)  # the eval's seed: the twin is this very network, so the rows agree exactly
    lpc_vocoder = WaveRNN(VocoderDims(rnn_dims=32, fc_dims=32, res_blocks=1, compute_dims=16, res_out_dims=32,
                                      lpc_order=16)).eval()
    s = evaluate_vocoder(lpc_vocoder, prepared, options=VocoderEvalOptions(items=2))["summary"]
    assert set(s) == {"recording", "baseline_gt", "vocoder_gt", "control_gt"}
    assert s["control_gt"] == s["vocoder_gt"]
    # through the mel's filter even random samples take the mel's envelope: understood far better than
    # a random plain WaveRNN and nearer the voice (measured WER 0.4 vs 1.0, similarity 0.76 vs 0.5),
    # yet further from it than Griffin-Lim (0.98): the margin over this row is the training's
    plain = evaluate_vocoder(random_vocoder, prepared, options=VocoderEvalOptions(items=2))["summary"]["vocoder_gt"]
    assert s["vocoder_gt"]["errors"] < plain["errors"]
    assert plain["similarity"] + 0.1 < s["vocoder_gt"]["similarity"] < s["baseline_gt"]["similarity"] - 0.1


def test_bad_inputs(prepared, random_vocoder, tmp_path):
    with pytest.raises(OptionsError):
        VocoderEvalOptions(items=0)
    with pytest.raises(InputShapeError, match="not a prepared set"):
        evaluate_vocoder(random_vocoder, tmp_path)
    (tmp_path / "metadata.json").write_text(json.dumps({"items": []}))
    with pytest.raises(InputShapeError, match="not an `rtclone train gta` export"):
        evaluate_vocoder(random_vocoder, prepared, tmp_path)


def test_cli(prepared, random_vocoder, tmp_path, capsys):
    ckpt = save_model(random_vocoder, tmp_path / "vocoder.pt", "vocoder")
    out = tmp_path / "report.json"
    assert main(["eval", "vocoder", str(prepared), str(ckpt), "--items", "1", "--backend", "torch", "-o", str(out), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    saved = json.loads(out.read_text())
    assert saved["summary"] == printed["summary"] and saved["options"]["items"] == 1
    assert saved["checkpoint"]["backend"] == "torch" and saved["checkpoint"]["step"] == 0
    assert "vocoder_pf_gt" not in saved["summary"]
    assert main(["eval", "vocoder", str(prepared), str(ckpt), "--items", "1", "--backend", "torch", "--postfilter", "--json"]) == 0
    filtered = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["summary"]
    assert filtered["control_pf_gt"]["words"] == filtered["vocoder_pf_gt"]["words"] > 0  # the checkpoint's dims give a control
    assert main(["eval", "vocoder", str(prepared), str(ckpt), "--items", "1", "--backend", "torch", "--unbatched", "--json"]) == 0
    unbatched = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    model = load_model(ckpt, "vocoder").eval()
    on_torch = SimpleNamespace(generate=functools.partial(model.generate, backend="torch"), dims=model.dims)
    direct = evaluate_vocoder(on_torch, prepared, options=VocoderEvalOptions(items=1, batched=False))
    assert saved["options"]["batched"] is True and unbatched["options"]["batched"] is False
    assert unbatched["summary"]["vocoder_gt"]["mel_l1"] == pytest.approx(direct["summary"]["vocoder_gt"]["mel_l1"], abs=1e-6)
    assert unbatched["summary"]["vocoder_gt"]["mel_l1"] != pytest.approx(saved["summary"]["vocoder_gt"]["mel_l1"], abs=1e-6)
    assert main(["eval", "vocoder", str(prepared), str(ckpt), "--backend", "gpu", "--json"]) != 0
    assert "--backend" in capsys.readouterr().out
