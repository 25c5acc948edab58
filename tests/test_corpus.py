"""Built-in corpus: inventory, sentences, a tiny build (layout, determinism, resume, splits)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from rtclone.corpus import (TEST_CHAPTER, TEST_SENTENCE_BASE, CorpusOptions, build_corpus, build_test_set, corpus_summary,
                            engine_available, list_utterances, list_voices, load_extra2_sentences, load_extra3_sentences,
                            load_extra_sentences, load_sentences, load_test_sentences, plan_corpus)
from rtclone.errors import OptionsError
from rtclone.text import ARPABET, clean_text, to_arpabet

TINY_VOICES = ("flite-slt", "flite-rms-v2", "espeak-en-us-m3")


def test_inventory_has_40_distinct_voices():
    voices = list_voices(seed=0)
    assert len(voices) >= 40
    assert len({v.name for v in voices}) == len(voices)
    # distinct as voices, not just by name: no two share engine, voice and all sox/engine params
    params = {tuple(v for k, v in dataclasses.asdict(s).items() if k != "name") for s in voices}
    assert len(params) == len(voices)
    assert {v.engine for v in voices} == {"flite", "festival", "espeak-ng"}
    assert all(v.quality in ("high", "medium", "low") for v in voices)
    assert all(v.quality == "low" for v in voices if v.engine == "espeak-ng")
    ranks = [("high", "medium", "low").index(v.quality) for v in voices if not v.pitch_cents
             and v.tempo == 1.0]  # base voices come best first
    assert ranks == sorted(ranks)
    assert list_voices(seed=0) == voices  # deterministic
    other = list_voices(seed=1)
    assert [v.name for v in other] == [v.name for v in voices] and other != voices


def test_sentence_list():
    sentences = load_sentences()
    assert len(sentences) >= 300 and len(set(sentences)) == len(sentences)
    for s in sentences:
        assert not re.search(r"\d", s), s  # engines and our cleaners must agree on the words
        assert 3 <= len(clean_text(s).split()) <= 20, s
    # every CMUdict phoneme occurs somewhere in the list
    phones = set(" ".join(re.findall(r"\{([^}]*)\}", to_arpabet(" ".join(sentences)))).split())
    assert phones == set(ARPABET)


def test_extra_sentence_list():
    core, extra = load_sentences(), load_extra_sentences()
    assert len(extra) >= 2000 and len(set(extra)) == len(extra)
    assert not {s.lower() for s in extra} & {s.lower() for s in core}  # nothing of the core (held-out) list
    for s in extra:
        assert re.fullmatch(r"[A-Za-z][A-Za-z ,.?!';]*", s), s
        assert 3 <= len(clean_text(s).split()) <= 20, s
    # the point of the list: many more spellings than the core sentences have
    words = lambda ss: set(re.findall(r"[a-z']+", " ".join(ss).lower()))  # noqa: E731
    assert len(words(extra) - words(core)) >= 4 * len(words(core))


@pytest.mark.parametrize("kwargs", [
    {"n_voices": 0}, {"n_voices": 10_000}, {"utterances_per_voice": 0}, {"extra_per_voice": -1},
    {"heldout_voices": 40, "n_voices": 40}, {"heldout_voices": -1}, {"heldout_sentences": 10_000},
    {"sample_rate": 4000}, {"jobs": 0}, {"voices": ("no-such-voice",)},
    {"voices": ("flite-slt", "flite-slt")},
])
def test_options_are_validated(kwargs):
    with pytest.raises(OptionsError):
        CorpusOptions(**kwargs)


def test_default_plan():
    options = CorpusOptions()
    plan = plan_corpus(options)
    voices = list_voices(options.seed)
    assert [v["name"] for v in plan["voices"]] == [v.name for v in voices[:options.n_voices]]
    assert all(v["quality"] != "low" for v in plan["voices"])  # the default set is intelligible
    assert len({v["speaker"] for v in plan["voices"]}) == options.n_voices
    held = [v for v in plan["voices"] if v["split"] == "eval"]
    assert len(held) == options.heldout_voices
    assert all(v["params"]["pitch_cents"] or v["params"]["tempo"] != 1.0 for v in held)
    per_voice = options.utterances_per_voice + options.heldout_sentences
    n_train = options.n_voices - options.heldout_voices
    assert len(plan["utterances"]) == options.n_voices * per_voice + n_train * options.extra_per_voice
    assert len({u["id"] for u in plan["utterances"]}) == len(plan["utterances"])
    assert plan_corpus(CorpusOptions()) == plan  # deterministic
    assert plan_corpus(CorpusOptions(seed=1))["sentences"] != plan["sentences"]
    # the extra sentences (chapter 3, training voices only) are spread evenly: each read by 1 or 2 voices
    n_core, extra = len(load_sentences()), load_extra_sentences()
    ch3 = [u for u in plan["utterances"] if u["id"].split("-")[1] == "3"]
    assert all(u["split"] == "train" and u["sentence"] >= n_core for u in ch3)
    assert {u["speaker"] for u in ch3} == {v["speaker"] for v in plan["voices"] if v["split"] == "train"}
    reads = np.bincount([u["sentence"] - n_core for u in ch3], minlength=len(extra))
    assert reads.min() >= (n_train * options.extra_per_voice) // len(extra) and reads.max() - reads.min() <= 1
    assert all(u["text"] == extra[u["sentence"] - n_core] for u in ch3)
    # and change nothing else: chapters 1 and 2 and the held-out sets are those of a corpus without them
    plain = plan_corpus(CorpusOptions(extra_per_voice=0))
    assert [u for u in plan["utterances"] if u not in ch3] == plain["utterances"]
    assert plan["voices"] == plain["voices"] and plan["sentences"]["heldout"] == plain["sentences"]["heldout"]
    assert plan["sentences"]["train"] == plain["sentences"]["train"] + list(range(n_core, n_core + len(extra)))


@pytest.mark.parametrize("field, chapter, base", [("extra2_per_voice", 4, {}),
                                                   ("extra3_per_voice", 5, {"extra2_per_voice": 125})])
def test_later_extra_lists_add_one_chapter_and_leave_the_earlier_version_alone(field, chapter, base):
    """Corpus v3 (chapter 4, the second list) and v4 (chapter 5, the third): the new chapter reads its list
    (training voices only, each sentence by as few voices as possible); everything of the earlier version's
    plan stays as it was, so a v2 corpus grows into v3 and a v3 one into v4."""
    core, lists = load_sentences(), [load_extra_sentences(), load_extra2_sentences(), load_extra3_sentences()]
    new_list, earlier = lists[chapter - 3], [s for lst in lists[:chapter - 3] for s in lst]
    assert len(new_list) >= 2000 and len(set(new_list)) == len(new_list)
    norm = lambda s: re.sub(r"[^a-z ]", "", s.lower())  # noqa: E731
    assert not {norm(s) for s in new_list} & {norm(s) for s in core + earlier}
    for s in new_list:
        assert re.fullmatch(r"[A-Za-z][A-Za-z ,.?!';:-]*[.?!]", s), s
        assert 3 <= len(clean_text(s).split()) <= 20, s
    old, grown = plan_corpus(CorpusOptions(**base)), plan_corpus(CorpusOptions(**base, **{field: 100}))
    assert old["version"] == chapter - 2 and field not in old["options"]
    assert grown["version"] == chapter - 1 and grown["options"][field] == 100
    added = [u for u in grown["utterances"] if u["id"].split("-")[1] == str(chapter)]
    assert [u for u in grown["utterances"] if u not in added] == old["utterances"]
    assert grown["voices"] == old["voices"] and grown["sentences"]["heldout"] == old["sentences"]["heldout"]
    first = len(core) + len(earlier)
    assert grown["sentences"]["train"] == old["sentences"]["train"] + list(range(first, first + len(new_list)))
    train_voices = [v["speaker"] for v in grown["voices"] if v["split"] == "train"]
    assert sorted({u["speaker"] for u in added}) == sorted(train_voices) and len(added) == 100 * len(train_voices)
    assert all(u["split"] == "train" and u["text"] == new_list[u["sentence"] - first] for u in added)
    reads = np.bincount([u["sentence"] - first for u in added], minlength=len(new_list))
    assert reads.max() - reads.min() <= 1
    with pytest.raises(OptionsError, match=field):
        CorpusOptions(**{field: -1})


def _tiny_options(**kw) -> CorpusOptions:
    base = dict(seed=3, voices=TINY_VOICES, utterances_per_voice=2, extra_per_voice=1, heldout_voices=1,
                heldout_sentences=1)
    return CorpusOptions(**{**base, **kw})


def _snapshot(root: Path) -> dict[str, tuple[int, str]]:
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, hashlib.md5(p.read_bytes()).hexdigest())
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    for engine in ("flite", "espeak-ng"):
        if not engine_available(engine):
            pytest.skip(f"{engine} or sox is not installed")
    root = tmp_path_factory.mktemp("corpus") / "a"
    return root, build_corpus(root, _tiny_options())


def test_tiny_build_layout(tiny):
    root, manifest = tiny
    assert manifest["complete"] and manifest["seed"] == 3 and manifest["version"] >= 1
    assert [v["name"] for v in manifest["voices"]] == list(TINY_VOICES)
    utts = manifest["utterances"]
    assert len(utts) == 3 * (2 + 1) + 2 * 1  # chapter 3: one extra sentence per training voice
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.flac"))
    assert files == sorted(u["path"] for u in utts)
    sentences = load_sentences() + load_extra_sentences()
    for u in utts:
        speaker, chapter, _ = u["id"].split("-")
        assert u["path"] == f"{speaker}/{chapter}/{u['id']}.flac" and chapter in ("1", "2", "3")
        assert u["text"] == sentences[u["sentence"]]
        trans = (root / speaker / chapter / f"{speaker}-{chapter}.trans.txt").read_text()
        assert f"{u['id']} {u['text']}\n" in trans
        wav, sr = sf.read(root / u["path"], dtype="float32")
        assert sr == 16000 and wav.ndim == 1
        seconds = len(wav) / sr
        assert 0.12 * len(u["text"].split()) < seconds < 1.0 * len(u["text"].split()) + 1.0
        assert 0.5 < np.abs(wav).max() < 0.75  # normalised to -3 dBFS peak
    transcripts = list(root.rglob("*.trans.txt"))
    assert len(transcripts) == 3 * 2 + 2
    assert sum(len(t.read_text().splitlines()) for t in transcripts) == len(utts)


def test_tiny_build_splits(tiny):
    root, manifest = tiny
    train_s, held_s = set(manifest["sentences"]["train"]), set(manifest["sentences"]["heldout"])
    assert not train_s & held_s and len(held_s) == 1
    assert train_s | held_s == set(range(len(load_sentences()) + len(load_extra_sentences())))
    held_v = {v["speaker"] for v in manifest["voices"] if v["split"] == "eval"}
    assert len(held_v) == 1
    summary = corpus_summary(manifest)
    assert (summary["voices"], summary["heldout_voices"], summary["utterances"]) == (3, 1, 11)
    assert summary["train_utterances"] == 6 and summary["heldout_sentences"] == 1
    train = list_utterances(root, "train")
    evals = list_utterances(root, "eval")
    assert len(train) + len(evals) == len(manifest["utterances"]) and len(train) == 2 * (2 + 1)
    assert {u["id"] for u in train}.isdisjoint(u["id"] for u in evals)
    for u in train:
        assert u["speaker"] not in held_v and u["sentence"] not in held_s
        assert Path(u["path"]).is_file()
    assert all(u["split"] == "eval" for u in manifest["utterances"]
               if u["speaker"] in held_v or u["sentence"] in held_s)


def test_tiny_build_is_deterministic_and_resumable(tiny, tmp_path):
    root, manifest = tiny
    before = _snapshot(root)
    assert build_corpus(root, _tiny_options()) == manifest
    assert _snapshot(root) == before  # second call: nothing rewritten
    # same seed elsewhere (and in two threads): the same bytes
    again = tmp_path / "b"
    build_corpus(again, _tiny_options(jobs=2))
    assert {k: v[1] for k, v in _snapshot(again).items()} == {k: v[1] for k, v in before.items()}
    # an interrupted build: a missing file and a stale partial are redone, nothing else
    rel = manifest["utterances"][4]["path"]
    victim = again / rel
    victim.unlink()
    victim.with_name(victim.name + ".part").write_bytes(b"junk")
    mid = _snapshot(again)
    build_corpus(again, _tiny_options())
    after = _snapshot(again)
    changed = {k for k in after if after[k] != mid.get(k)}
    assert changed == {rel}
    assert after[rel][1] == before[rel][1]
    # another seed in the same directory is refused rather than mixed in
    with pytest.raises(OptionsError):
        build_corpus(again, _tiny_options(seed=4))
    shutil.rmtree(again)


def test_v2_corpus_grows_into_v3(tiny, tmp_path):
    """A copy of a built v2 corpus (without its manifest) built as v3 renders chapter 4 only."""
    root, manifest = tiny
    grown = tmp_path / "v3"
    shutil.copytree(root, grown)
    (grown / "manifest.json").unlink()
    before = _snapshot(grown)
    v3 = build_corpus(grown, _tiny_options(extra2_per_voice=2))
    after = _snapshot(grown)
    assert v3["version"] == 3 and v3["complete"]
    assert {k: v for k, v in after.items() if k in before and k != "manifest.json"} == \
        {k: v for k, v in before.items() if k != "manifest.json"}  # nothing of v2 rewritten
    new = {k for k in after if k not in before and k != "manifest.json"}
    ch4 = [u for u in v3["utterances"] if u["id"].split("-")[1] == "4"]
    assert len(ch4) == 2 * 2  # two training voices x 2
    assert new == {u["path"] for u in ch4} | {u["path"].rsplit("/", 1)[0] + "/" + u["speaker"] + "-4.trans.txt" for u in ch4}
    assert all(sf.info(str(grown / u["path"])).frames > 1600 for u in ch4)
    assert [u for u in v3["utterances"] if u not in ch4] == manifest["utterances"]


def test_variant_changes_the_voice(tiny):
    """The pitch-shifted variant is really higher: median f0 of rms-v2 vs plain rms speech."""
    root, manifest = tiny
    spec = {v.name: v for v in list_voices(3)}["flite-rms-v2"]
    assert spec.pitch_cents > 200
    speaker = next(v["speaker"] for v in manifest["voices"] if v["name"] == "flite-rms-v2")
    utt = next(u for u in manifest["utterances"] if u["id"] == f"{speaker}-2-0000")
    shifted, _ = sf.read(root / utt["path"], dtype="float32")
    plain_root = root.parent / "plain"
    build_corpus(plain_root, CorpusOptions(seed=3, voices=("flite-rms",), utterances_per_voice=1, extra_per_voice=0,
                                           heldout_voices=0, heldout_sentences=1))
    plain, _ = sf.read(next(plain_root.rglob("*-2-0000.flac")), dtype="float32")  # same sentence

    def median_f0(wav, sr=16000, n=1024, hop=256):  # autocorrelation f0 over the loud frames
        frames = np.lib.stride_tricks.sliding_window_view(wav, n)[::hop] * np.hanning(n)
        loud = frames[(frames ** 2).mean(1) > 0.2 * (frames ** 2).mean(1).max()]
        ac = np.fft.irfft(np.abs(np.fft.rfft(loud, 2 * n)) ** 2)[:, :n]  # (frames, lags)
        lo, hi = sr // 400, sr // 60
        return float(np.median(sr / (lo + np.argmax(ac[:, lo:hi], axis=1))))

    ratio = median_f0(shifted) / median_f0(plain)
    assert abs(1200 * np.log2(ratio) - spec.pitch_cents) < 80  # cents, within the estimate's accuracy


@pytest.mark.skipif(not engine_available("festival", "kal_diphone"), reason="festival not installed")
def test_festival_voice_renders(tmp_path):
    manifest = build_corpus(tmp_path, CorpusOptions(voices=("festival-kalDiphone",), extra_per_voice=0,
                                                    utterances_per_voice=1, heldout_voices=0,
                                                    heldout_sentences=1))
    wav, sr = sf.read(tmp_path / manifest["utterances"][0]["path"], dtype="float32")
    assert sr == 16000 and len(wav) / sr > 0.12 * len(manifest["utterances"][0]["text"].split())


def test_test_sentence_list_is_in_no_training_list():
    test = load_test_sentences()
    assert len(test) >= 80 and len(set(test)) == len(test)
    norm = lambda ss: {re.sub(r"[^a-z ]", "", s.lower()) for s in ss}  # noqa: E731
    others = load_sentences() + load_extra_sentences() + load_extra2_sentences() + load_extra3_sentences()
    assert not norm(test) & norm(others)
    for s in test:
        assert re.fullmatch(r"[A-Za-z][A-Za-z ,.?!';]*", s), s
        assert 3 <= len(clean_text(s).split()) <= 20, s


def test_test_set_reads_new_sentences_in_the_source_voices(tiny, tmp_path):
    root, manifest = tiny
    texts = ["The lantern swung gently above the quiet dock.", "Nobody expected the parade to start so early."]
    out = tmp_path / "test"
    ts = build_test_set(root, out, sentences=texts)
    assert ts["complete"] and ts["format"] == "rtclone-test-set"
    high = [v for v in manifest["voices"] if v["quality"] == "high"]  # the espeak-ng voice is left out by default
    assert ts["voices"] == high and len(high) == 2
    assert ts["sentences"]["heldout"] == [TEST_SENTENCE_BASE, TEST_SENTENCE_BASE + 1]
    refs = [u for u in ts["utterances"] if u["id"].split("-")[1] == "1"]
    assert refs == [u for u in manifest["utterances"] if u["id"].split("-")[1] == "1" and u["speaker"] in {v["speaker"] for v in high}]
    assert ts["sentences"]["train"] == sorted({u["sentence"] for u in refs})
    summary = corpus_summary(ts)
    assert (summary["test_utterances"], summary["reference_utterances"], summary["test_sentences"]) == (4, len(refs), 2)
    assert "train_utterances" not in summary and len(refs) > 0
    for u in refs:  # the source's files themselves, not copies
        assert (out / u["path"]).samefile(root / u["path"])
    tests = [u for u in ts["utterances"] if u["id"].split("-")[1] == str(TEST_CHAPTER)]
    assert [(u["speaker"], u["text"], u["split"]) for u in tests] == [(v["speaker"], t, "eval") for v in high for t in texts]
    for u in tests:
        wav, sr = sf.read(out / u["path"], dtype="float32")
        assert sr == 16000 and 0.12 * len(u["text"].split()) < len(wav) / sr < len(u["text"].split()) + 1.0
        assert f"{u['id']} {u['text']}\n" in (out / u["path"]).with_name(f"{u['speaker']}-{TEST_CHAPTER}.trans.txt").read_text()
    before = _snapshot(out)
    assert build_test_set(root, out, sentences=texts) == ts and _snapshot(out) == before  # resumed: nothing redone
    assert ts["source"]["path"] == str(root.resolve())
    relative = Path(os.path.relpath(root, Path.cwd()))  # the same source spelled another way resumes too
    assert build_test_set(relative, out, sentences=texts) == ts and _snapshot(out) == before
    with pytest.raises(OptionsError, match="other options"):
        build_test_set(root, out, sentences=texts[:1])
    with pytest.raises(OptionsError, match="in the source corpus"):
        build_test_set(root, tmp_path / "x", sentences=[manifest["utterances"][0]["text"]])
    with pytest.raises(OptionsError, match="training list"):  # read by no voice of this tiny corpus, but a v4 corpus trains on it
        build_test_set(root, tmp_path / "x", sentences=[load_extra3_sentences()[-1]])
    with pytest.raises(OptionsError, match="not in"):
        build_test_set(root, tmp_path / "x", voices=("flite-kal16",), sentences=texts)
    with pytest.raises(OptionsError, match="jobs"):
        build_test_set(root, tmp_path / "x", sentences=texts, jobs=0)
    with pytest.raises(OptionsError, match="not a built corpus"):
        build_test_set(tmp_path / "nothing", tmp_path / "x", sentences=texts)
    one = build_test_set(root, tmp_path / "one", voices=("flite-rms-v2",), sentences=texts[1:])
    assert [v["name"] for v in one["voices"]] == ["flite-rms-v2"]
    same = next(u for u in tests if u["speaker"] == one["voices"][0]["speaker"] and u["text"] == texts[1])
    got = next(u for u in one["utterances"] if u["sentence"] == TEST_SENTENCE_BASE)
    assert sf.read(tmp_path / "one" / got["path"])[0].tolist() == sf.read(out / same["path"])[0].tolist()  # deterministic


def test_test_set_command_reads_a_sentence_file(tiny, tmp_path, capsys):
    from rtclone.cli import main

    root, _ = tiny
    listing = tmp_path / "sentences.txt"
    listing.write_text("# a comment\n\nThe lantern swung gently above the quiet dock.\n", encoding="utf-8")
    out = tmp_path / "cli"
    assert main(["corpus", "test-set", str(root), str(out), "--sentences", str(listing), "--voice", "flite-slt", "--json"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert [u["text"] for u in manifest["utterances"] if u["sentence"] == TEST_SENTENCE_BASE] == [
        "The lantern swung gently above the quiet dock."]
    assert [v["name"] for v in manifest["voices"]] == ["flite-slt"] and manifest["complete"]
    printed = json.loads(capsys.readouterr().out)
    assert (printed["test_utterances"], printed["test_sentences"], printed["voices"]) == (1, 1, 1)
    assert main(["corpus", "test-set", str(root), str(tmp_path / "y"), "--sentences", str(tmp_path / "missing.txt")]) != 0
    assert "cannot read the sentence file" in capsys.readouterr().err
