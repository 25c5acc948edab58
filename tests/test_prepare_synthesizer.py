"""Synthesizer data preparation: the prepared set against the front end, skipped items, parallel and incremental
preparation, the CLI, other corpus layouts, bucketing and collation, the built-in corpus's splits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import make_speech
from rtclone.errors import InputShapeError, OptionsError
from rtclone.train.synthesizer import SynthDataset, bucket_batches, collate, prepare_synthesizer_data, synthesizer_items
from synth_data import encoder, prepared, write_corpus  # noqa: F401 - module-scoped fixtures

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one torch thread for the module


def test_prepared_data_matches_the_front_end(prepared, encoder):
    from rtclone.audio import preprocess_wav, synth_mel
    from rtclone.encoder import embed_utterance

    items = json.loads((prepared / "metadata.json").read_text())["items"]
    assert sorted(i["text"] for i in items) == ["GREEN APPLES.", "HELLO THERE.", "THE CAT SAT."]
    item = next(i for i in items if i["text"] == "THE CAT SAT.")
    src = next(Path(p) for p in sorted((prepared.parent).rglob("slt-1-0000.flac")))
    wav = preprocess_wav(src)
    mel = np.load(prepared / "mels" / f"{item['id']}.npy")
    np.testing.assert_allclose(mel, synth_mel(wav), atol=1e-5)
    assert mel.shape == (80, item["frames"]) and item["samples"] == wav.shape[0]
    emb = np.load(prepared / "embeds" / f"{item['id']}.npy")
    np.testing.assert_allclose(emb, embed_utterance(encoder, wav), atol=1e-5)
    assert abs(np.linalg.norm(emb) - 1.0) < 1e-4


def test_unusable_items_are_skipped(tmp_path, encoder):
    root = write_corpus(tmp_path / "c", {"slt": ["Fine words.", "Good day."]})
    (root / "slt" / "1" / "slt-1.trans.txt").write_text("slt-1-0000 ...\nslt-1-0001 GOOD DAY.\n")  # "..." is unspeakable
    sf.write(root / "slt" / "1" / "slt-1-0002.flac", np.zeros(16000, np.float32), 16000)  # silence
    (root / "slt" / "1" / "slt-1-0002.txt").write_text("Silent file.")
    summary = prepare_synthesizer_data(root, tmp_path / "out", encoder)
    assert (summary["items"], summary["skipped"]) == (1, 2)
    (root / "slt" / "1" / "slt-1.trans.txt").write_text("slt-1-0000 ...\n")
    with pytest.raises(InputShapeError, match="no usable utterances"):
        prepare_synthesizer_data(root, tmp_path / "out2", encoder)


def test_parallel_preparation_writes_what_one_process_writes(tmp_path, encoder):
    root = write_corpus(tmp_path / "c", {"slt": ["Fine words.", "Good day.", "Blue sky."], "rms": ["Green apples."]})
    (root / "slt" / "1" / "slt-1.trans.txt").write_text(
        (root / "slt" / "1" / "slt-1.trans.txt").read_text().replace("GOOD DAY.", "..."))  # unspeakable
    sf.write(root / "rms" / "1" / "rms-1-0001.flac", np.zeros(16000, np.float32), 16000)  # silence
    (root / "rms" / "1" / "rms-1-0001.txt").write_text("Silent file.")
    one = prepare_synthesizer_data(root, tmp_path / "one", encoder)
    # a partly prepared directory: the workers compute only the missing items
    two_dir = tmp_path / "two"
    prepare_synthesizer_data(root, two_dir, encoder, jobs=2)
    (two_dir / "mels" / next(p.name for p in (two_dir / "mels").iterdir())).unlink()
    (two_dir / "metadata.json").unlink()
    two = prepare_synthesizer_data(root, two_dir, encoder, jobs=2)
    assert one == {**two, "out": str(tmp_path / "one")} and (one["items"], one["skipped"]) == (3, 2)
    meta = [json.loads((d / "metadata.json").read_text()) for d in (tmp_path / "one", two_dir)]
    assert meta[0] == meta[1]
    for item in meta[0]["items"]:
        for sub in ("mels", "audio"):
            np.testing.assert_array_equal(np.load(tmp_path / "one" / sub / f"{item['id']}.npy"),
                                          np.load(two_dir / sub / f"{item['id']}.npy"))
        np.testing.assert_allclose(np.load(tmp_path / "one" / "embeds" / f"{item['id']}.npy"),
                                   np.load(two_dir / "embeds" / f"{item['id']}.npy"), atol=1e-5)
    assert sorted(p.name for p in (two_dir / "mels").iterdir()) == sorted(p.name for p in (tmp_path / "one" / "mels").iterdir())
    with pytest.raises(OptionsError, match="jobs"):
        prepare_synthesizer_data(root, tmp_path / "three", encoder, jobs=0)


def test_preparing_again_reads_only_what_is_new(tmp_path, encoder, monkeypatch):
    import rtclone.audio

    root = write_corpus(tmp_path / "c", {"slt": ["Fine words.", "Good day."]})
    out = tmp_path / "out"
    assert prepare_synthesizer_data(root, out, encoder)["items"] == 2
    before = {p.name: p.read_bytes() for p in (out / "mels").iterdir()}
    calls = []
    real = rtclone.audio.preprocess_wav
    monkeypatch.setattr(rtclone.audio, "preprocess_wav", lambda *a, **k: calls.append(a) or real(*a, **k))
    loads, real_load = [], np.load
    monkeypatch.setattr(np, "load", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    # up to date: nothing is read (not even the old arrays), same summary
    assert prepare_synthesizer_data(root, out, encoder) == {"items": 2, "skipped": 0, "out": str(out)}
    assert calls == [] and loads == []
    # the corpus grows by one utterance and one unusable (silent) file: only those two are processed
    sf.write(root / "slt" / "1" / "slt-1-0002.flac", make_speech("Blue sky.", voice="slt"), 16000)
    sf.write(root / "slt" / "1" / "slt-1-0003.flac", np.zeros(16000, np.float32), 16000)
    trans = root / "slt" / "1" / "slt-1.trans.txt"
    trans.write_text(trans.read_text() + "slt-1-0002 BLUE SKY.\nslt-1-0003 QUIET.\n")
    assert prepare_synthesizer_data(root, out, encoder) == {"items": 3, "skipped": 1, "out": str(out)}
    assert sorted(Path(a[0]).name for a in calls) == ["slt-1-0002.flac", "slt-1-0003.flac"]
    assert {p.name: p.read_bytes() for p in (out / "mels").iterdir() if p.name in before} == before
    meta = json.loads((out / "metadata.json").read_text())
    assert sorted(i["text"] for i in meta["items"]) == ["BLUE SKY.", "FINE WORDS.", "GOOD DAY."]
    calls.clear()  # the skipped file is remembered: the next call reads nothing again
    assert prepare_synthesizer_data(root, out, encoder)["items"] == 3 and calls == []
    # a changed transcript updates the metadata without recomputing audio features
    trans.write_text(trans.read_text().replace("BLUE SKY.", "BLUE SKIES."))
    prepare_synthesizer_data(root, out, encoder)
    assert calls == [] and "BLUE SKIES." in {i["text"] for i in json.loads((out / "metadata.json").read_text())["items"]}


def test_cli_prepare_only(tmp_path, monkeypatch):
    from rtclone.cli import main

    root = write_corpus(tmp_path / "c", {"slt": ["Fine words."]})
    assert main(["train", "synthesizer", str(root), str(tmp_path / "run"), "--prepared", str(tmp_path / "p"),
                 "--prepare-only", "--json"]) == 0
    meta = json.loads((tmp_path / "p" / "metadata.json").read_text())
    assert [i["text"] for i in meta["items"]] == ["FINE WORDS."]
    assert not (tmp_path / "run").exists()  # nothing trained
    # this layout has no held-out split, and a prepared DATA cannot be re-split: clear errors
    assert main(["train", "synthesizer", str(root), str(tmp_path / "run"), "--prepared", str(tmp_path / "v"),
                 "--prepare-only", "--split", "eval"]) != 0
    assert main(["train", "synthesizer", str(tmp_path / "p"), str(tmp_path / "run"), "--prepare-only",
                 "--split", "eval"]) != 0
    assert not (tmp_path / "v").exists() and not (tmp_path / "run").exists()


def test_vctk_and_libritts_layouts(tmp_path):
    vctk = tmp_path / "vctk"
    for sub in ("txt/p225", "wav48_silence_trimmed/p225"):
        (vctk / sub).mkdir(parents=True)
    (vctk / "txt/p225/p225_001.txt").write_text("Please call Stella.\n")
    for mic in ("mic1", "mic2"):
        (vctk / f"wav48_silence_trimmed/p225/p225_001_{mic}.flac").write_bytes(b"")
    items = synthesizer_items(vctk)
    assert [(i.audio.name, i.text, i.speaker) for i in items] == [("p225_001_mic1.flac", "Please call Stella.", "p225")]
    tts = tmp_path / "libritts" / "84" / "121123"
    tts.mkdir(parents=True)
    (tts / "84_121123_000007_000001.wav").write_bytes(b"")
    (tts / "84_121123_000007_000001.normalized.txt").write_text("Hello, world.")
    (tts / "84_121123_000007_000001.original.txt").write_text("Hello, world!")
    items = synthesizer_items(tmp_path / "libritts")
    assert [(i.audio.name, i.text, i.speaker) for i in items] == [("84_121123_000007_000001.wav", "Hello, world.", "84")]


def test_bucketing_and_collate(prepared):
    lengths = [50, 10, 40, 20, 30, 60, 5]
    batches = bucket_batches(lengths, 2, np.random.default_rng(0))
    assert sorted(i for b in batches for i in b) == list(range(7))
    assert all(lengths[b[0]] <= lengths[b[-1]] for b in batches)  # sorted within a batch
    assert batches == bucket_batches(lengths, 2, np.random.default_rng(0))
    ds = SynthDataset(prepared)
    b = collate(ds, [0, 1, 2], r=3)
    T = max(i["frames"] for i in ds.items)
    assert b["mels"].shape == (3, 80, -(-T // 3) * 3) and b["chars"].shape[0] == 3
    for j, item in enumerate(ds.items):
        n = item["frames"]
        assert float(b["stop"][j, n - 2]) == 0.0 and bool((b["stop"][j, n - 1:] == 1).all())
        assert bool((b["mels"][j, :, n:] == -4.0).all())
        assert int(b["text_lens"][j]) == len(item["text"]) + 1  # EOS


def test_built_in_corpus_feeds_only_its_training_split(tmp_path):
    import shutil

    from rtclone.corpus import CorpusOptions, build_corpus, list_utterances
    from rtclone.train.synthesizer import synthesizer_items

    if shutil.which("flite") is None or shutil.which("sox") is None:
        pytest.skip("flite and sox are needed to build a corpus")
    opts = CorpusOptions(seed=0, n_voices=3, utterances_per_voice=2, extra_per_voice=1, heldout_voices=1,
                         heldout_sentences=1)
    build_corpus(tmp_path, opts)
    train = {(u["speaker"], u["text"]) for u in list_utterances(tmp_path, "train")}
    evals = list_utterances(tmp_path, "eval")
    items = synthesizer_items(tmp_path)
    assert evals and len(items) == len(train)
    assert {(int(i.speaker), i.text) for i in items} == {(int(s), t) for s, t in train}
    assert not {i.audio.name for i in items} & {Path(u["path"]).name for u in evals}
    # the eval split (for a validation loss) is exactly the held-out utterances; other layouts have none
    held = synthesizer_items(tmp_path, "eval")
    assert sorted(i.audio.name for i in held) == sorted(Path(u["path"]).name for u in evals)
    with pytest.raises(OptionsError):
        synthesizer_items(tmp_path, "test")
    flat = tmp_path / "flat"
    flat.mkdir()
    with pytest.raises(OptionsError, match="eval split"):
        synthesizer_items(flat, "eval")
