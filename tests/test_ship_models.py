"""scripts/ship_models.py: the default-model folder and its card, including the post-filter flag."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from rtclone.checkpoints import save_model
from rtclone.pipeline import Cloner
from rtclone.synthesizer import SynthesizerDims, Tacotron
from rtclone.vocoder import VocoderDims, WaveRNN

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "ship_models.py"


@pytest.fixture()
def ship(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("ship_models", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setattr(mod, "MODELS", tmp_path / "models")
    torch.manual_seed(0)
    save_model(Tacotron(SynthesizerDims.tiny()), tmp_path / "syn.pt", "synthesizer")
    save_model(WaveRNN(VocoderDims(rnn_dims=32, fc_dims=32, res_blocks=1, compute_dims=16, res_out_dims=32)), tmp_path / "voc.pt", "vocoder")

    def run(*args: str) -> int:
        monkeypatch.setattr(sys, "argv", ["ship_models.py", "--synthesizer", str(tmp_path / "syn.pt"), *args])
        return mod.main()

    return run, tmp_path


def test_the_card_carries_the_postfilter_flag_to_the_cloner(ship, capsys):
    run, root = ship
    assert run("--vocoder", str(root / "voc.pt"), "--postfilter") == 0
    card = json.loads((root / "models" / "card.json").read_text())
    assert card["vocoder"]["postfilter"] is True and card["vocoder"]["kind"] == "vocoder"
    assert Cloner.from_dir(root / "models").postfilter is True
    assert run("--vocoder", str(root / "voc.pt")) == 0
    assert json.loads((root / "models" / "card.json").read_text())["vocoder"]["postfilter"] is False
    assert Cloner.from_dir(root / "models").postfilter is False
    assert run() == 0  # Griffin-Lim: the vocoder file goes, no flag
    assert not (root / "models" / "vocoder.pt").exists() and Cloner.from_dir(root / "models").postfilter is False
    capsys.readouterr()


def test_postfilter_refusals(ship, capsys):
    run, root = ship
    assert run("--postfilter") == 1  # nothing to filter
    (root / "eval.json").write_text(json.dumps({"summary": {}, "postfilter": False}))
    assert run("--vocoder", str(root / "voc.pt"), "--postfilter", "--eval", str(root / "eval.json")) == 1
    assert "not measured with the post-filter" in capsys.readouterr().err
    (root / "eval.json").write_text(json.dumps({"summary": {}, "postfilter": True}))
    assert run("--vocoder", str(root / "voc.pt"), "--postfilter", "--eval", str(root / "eval.json")) == 0
    assert json.loads((root / "models" / "card.json").read_text())["eval"]["summary"] == {}


def test_half_storage_ships_the_float16_rounded_model(ship, capsys, monkeypatch):
    run, root = ship
    full = torch.load(root / "syn.pt", weights_only=True)["model_state"]
    assert run("--half") == 0
    shipped = torch.load(root / "models" / "synthesizer.pt", weights_only=True)
    assert {v.dtype for v in shipped["model_state"].values() if v.is_floating_point()} == {torch.float16}
    assert shipped["meta"]["stored"] == "float16"
    assert json.loads((root / "models" / "card.json").read_text())["synthesizer"]["meta"]["stored"] == "float16"
    size = (root / "models" / "synthesizer.pt").stat().st_size
    assert size < 0.6 * (root / "syn.pt").stat().st_size
    model = Cloner.from_dir(root / "models").synthesizer
    for k, v in model.state_dict().items():
        if v.is_floating_point():
            assert v.dtype == torch.float32
            torch.testing.assert_close(v, full[k].half().float(), rtol=0, atol=0)
    # --half-only writes the same model to another path, to evaluate it before shipping
    spec = importlib.util.spec_from_file_location("ship_models_half", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setattr(sys, "argv", ["ship_models.py", "--half-only", str(root / "syn.pt"), str(root / "half.pt")])
    assert mod.main() == 0
    half = torch.load(root / "half.pt", weights_only=True)["model_state"]
    assert half.keys() == shipped["model_state"].keys()
    assert all(torch.equal(half[k], shipped["model_state"][k]) for k in half)
    capsys.readouterr()


def test_the_speaker_mean_ships_with_its_synthesizer_or_not_at_all(ship, capsys):
    import numpy as np

    from rtclone.pipeline import SPEAKER_MEAN_FILE

    run, root = ship
    size = SynthesizerDims.tiny().speaker_embedding_size
    mean = np.random.default_rng(3).standard_normal(size).astype(np.float32)
    np.save(root / "mean.npy", mean)
    assert run("--speaker-mean", str(root / "mean.npy")) == 0
    card = json.loads((root / "models" / "card.json").read_text())
    assert card["speaker_mean"]["file"] == SPEAKER_MEAN_FILE and card["speaker_mean"]["from"] == str(root / "mean.npy")
    cloner = Cloner.from_dir(root / "models")
    np.testing.assert_array_equal(cloner.speaker_mean, mean)
    cloner.speaker_contrast = 0.5  # accepted: the mean is known
    # a new synthesizer without a mean takes the old one away (it described other voices)
    assert run() == 0
    assert not (root / "models" / SPEAKER_MEAN_FILE).exists()
    assert json.loads((root / "models" / "card.json").read_text())["speaker_mean"] is None
    assert Cloner.from_dir(root / "models").speaker_mean is None
    # a mean of the wrong size, or not a mean at all, is refused before anything is replaced
    before = (root / "models" / "synthesizer.pt").read_bytes()
    np.save(root / "short.npy", mean[:-1])
    (root / "junk.npy").write_bytes(b"not numpy")
    for bad in ("short.npy", "junk.npy"):
        assert run("--half", "--speaker-mean", str(root / bad)) == 1
        assert "refusing" in capsys.readouterr().err
    assert (root / "models" / "synthesizer.pt").read_bytes() == before
    assert not (root / "models" / SPEAKER_MEAN_FILE).exists()


def test_the_card_carries_the_int8_decoder_flag_to_the_cloner(ship, capsys):
    run, root = ship
    assert run("--decoder-int8") == 0
    assert json.loads((root / "models" / "card.json").read_text())["synthesizer"]["decoder_int8"] is True
    assert Cloner.from_dir(root / "models").decoder_int8 is True
    assert run() == 0
    assert json.loads((root / "models" / "card.json").read_text())["synthesizer"]["decoder_int8"] is False
    assert Cloner.from_dir(root / "models").decoder_int8 is False
    # the report must have been measured the way the models ship
    (root / "eval.json").write_text(json.dumps({"summary": {}, "decoder_int8": False}))
    assert run("--decoder-int8", "--eval", str(root / "eval.json")) == 1
    assert "decoder_int8" in capsys.readouterr().err
    (root / "eval.json").write_text(json.dumps({"summary": {}, "decoder_int8": True}))
    assert run("--eval", str(root / "eval.json")) == 1
    assert run("--decoder-int8", "--eval", str(root / "eval.json")) == 0
    assert Cloner.from_dir(root / "models").decoder_int8 is True
    capsys.readouterr()


def test_a_griffin_lim_card_records_the_engines_settings_and_refuses_an_eval_made_otherwise(ship, capsys):
    from rtclone import audio

    run, root = ship
    assert run() == 0
    voc = json.loads((root / "models" / "card.json").read_text())["vocoder"]
    assert (voc["power"], voc["formants"]) == (audio.GRIFFIN_LIM_POWER, audio.GRIFFIN_LIM_FORMANTS)
    (root / "eval.json").write_text(json.dumps({"summary": {}, "griffin_lim_power": audio.GRIFFIN_LIM_POWER,
                                                "griffin_lim_formants": audio.GRIFFIN_LIM_FORMANTS + 0.15}))
    assert run("--eval", str(root / "eval.json")) == 1
    assert "formants" in capsys.readouterr().err
    (root / "eval.json").write_text(json.dumps({"summary": {"seen": {}}, "griffin_lim_power": audio.GRIFFIN_LIM_POWER,
                                                "griffin_lim_formants": audio.GRIFFIN_LIM_FORMANTS}))
    assert run("--eval", str(root / "eval.json")) == 0
    assert json.loads((root / "models" / "card.json").read_text())["eval"]["summary"] == {"seen": {}}
    # a trained vocoder's eval is not held to Griffin-Lim's settings
    (root / "eval.json").write_text(json.dumps({"summary": {}, "griffin_lim_formants": 0.5}))
    assert run("--vocoder", str(root / "voc.pt"), "--eval", str(root / "eval.json")) == 0
    capsys.readouterr()


def test_an_inverter_ships_with_the_eval_that_ran_it_and_reaches_the_cloner(ship, capsys):
    from rtclone import audio
    from rtclone.checkpoints import load_model
    from rtclone.mel_inverter import InverterDims, MelInverter, fingerprint

    run, root = ship
    inv = MelInverter(InverterDims(hidden=16, layers=1, context=1))
    torch.nn.init.normal_(inv.out.weight, std=0.1)
    save_model(inv, root / "inv.pt", "inverter", meta={"step": 5})
    mark = fingerprint(load_model(root / "inv.pt", "inverter"))
    assert mark == fingerprint(inv) and mark != fingerprint(MelInverter(inv.dims))
    gl = {"summary": {}, "griffin_lim_power": audio.GRIFFIN_LIM_POWER, "griffin_lim_formants": audio.GRIFFIN_LIM_FORMANTS}
    (root / "eval.json").write_text(json.dumps({**gl, "griffin_lim_inverter": None}))
    assert run("--inverter", str(root / "inv.pt"), "--eval", str(root / "eval.json")) == 1  # measured without it
    assert "inverter" in capsys.readouterr().err and not (root / "models" / "inverter.pt").exists()
    (root / "eval.json").write_text(json.dumps({**gl, "griffin_lim_inverter": mark}))
    assert run("--eval", str(root / "eval.json")) == 1  # measured with one, none shipped
    assert run("--inverter", str(root / "inv.pt"), "--vocoder", str(root / "voc.pt")) == 1
    assert run("--inverter", str(root / "inv.pt"), "--eval", str(root / "eval.json")) == 0
    card = json.loads((root / "models" / "card.json").read_text())
    assert card["vocoder"]["inverter"]["fingerprint"] == mark and card["vocoder"]["inverter"]["meta"] == {"step": 5}
    assert card["vocoder"]["inverter"]["dims"]["context"] == 1
    loaded = Cloner.from_dir(root / "models").vocoder.inverter
    assert fingerprint(loaded) == mark
    assert run() == 0  # shipped without: the old inverter goes
    assert not (root / "models" / "inverter.pt").exists() and Cloner.from_dir(root / "models").vocoder.inverter is None
    assert json.loads((root / "models" / "card.json").read_text())["vocoder"]["inverter"] is None
    capsys.readouterr()
