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
