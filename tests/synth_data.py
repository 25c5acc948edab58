"""The small corpus and prepared set the synthesizer-training tests share (fixtures imported by each module)."""

from __future__ import annotations

from pathlib import Path

import pytest
import soundfile as sf

from conftest import make_speech
from rtclone import checkpoints
from rtclone.train.synthesizer import prepare_synthesizer_data

UTTERANCES = {"slt": ["The cat sat.", "Hello there."], "awb": ["Green apples."]}


def write_corpus(root: Path, utterances: dict[str, list[str]]) -> Path:
    """The built-in corpus layout: root/speaker/chapter/<id>.flac + <speaker>-<chapter>.trans.txt."""
    for spk, texts in utterances.items():
        chapter = root / spk / "1"
        chapter.mkdir(parents=True, exist_ok=True)
        lines = []
        for i, text in enumerate(texts):
            uid = f"{spk}-1-{i:04d}"
            sf.write(chapter / f"{uid}.flac", make_speech(text, voice=spk), 16000)
            lines.append(f"{uid} {text.upper()}")
        (chapter / f"{spk}-1.trans.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def encoder():
    return checkpoints.load_encoder()


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, encoder) -> Path:
    root = write_corpus(tmp_path_factory.mktemp("corpus"), UTTERANCES)
    out = tmp_path_factory.mktemp("prepared")
    summary = prepare_synthesizer_data(root, out, encoder)
    assert summary == {"items": 3, "skipped": 0, "out": str(out)}
    return out
