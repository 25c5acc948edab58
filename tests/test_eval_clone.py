"""Cloning evaluation: WER arithmetic, the pocketsphinx transcriber, and `evaluate_cloning` driven by
stand-in cloners whose right answers are known (the corpus's own recordings)."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from rtclone import audio
from rtclone.asr import Transcriber, WerCount, error_kinds, normalize_words, word_error_rate, word_errors
from rtclone.corpus import CorpusOptions, build_corpus, engine_available
from rtclone.errors import AttentionFailureError, OptionsError
from rtclone.eval_clone import CloneEvalOptions, check_goals, evaluate_cloning, format_table, merge_reports
from rtclone.griffin_lim import SegmentPlan

from conftest import make_speech

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("ref, hyp, errors", [
    ("a b c", "a b c", 0),
    ("a b c", "a x c", 1),       # substitution
    ("a b c", "a c", 1),         # deletion
    ("a b c", "a b c d", 1),     # insertion
    ("a b c", "", 3),
    ("", "a b", 2),
    ("the cat sat", "cat sat the", 2),
])  # fmt: skip
def test_word_errors(ref, hyp, errors):
    assert word_errors(ref.split(), hyp.split()) == errors


def test_word_errors_matches_brute_force_on_random_sequences():
    rng = np.random.default_rng(0)

    def brute(a, b):  # plain recursion with memo: the textbook definition
        from functools import lru_cache

        @lru_cache(None)
        def d(i, j):
            if i == 0 or j == 0:
                return i + j
            return min(d(i - 1, j) + 1, d(i, j - 1) + 1, d(i - 1, j - 1) + (a[i - 1] != b[j - 1]))

        return d(len(a), len(b))

    for _ in range(50):
        a = tuple(rng.choice(list("abcd"), size=rng.integers(0, 7)))
        b = tuple(rng.choice(list("abcd"), size=rng.integers(0, 7)))
        assert word_errors(a, b) == brute(a, b)


@pytest.mark.parametrize("ref, hyp, kinds", [
    ("a b c", "a b c", (0, 0, 0)),
    ("a b c", "a x c", (1, 0, 0)),
    ("a b c", "a c", (0, 1, 0)),
    ("a b c", "a b c d", (0, 0, 1)),
    ("a b c", "", (0, 3, 0)),
    ("", "a b", (0, 0, 2)),
    ("a b c d e", "x c", (1, 3, 0)),
    ("a b c", "x b c d d", (1, 0, 2)),
    ("I have 2 cats.", "i have two hats", (1, 0, 0)),  # normalised as word_error_rate is
])  # fmt: skip
def test_error_kinds(ref, hyp, kinds):
    assert error_kinds(ref, hyp) == kinds


def test_error_kinds_add_up_to_the_word_errors():
    rng = np.random.default_rng(1)
    for _ in range(200):
        a = " ".join(rng.choice(list("abcd"), size=rng.integers(0, 8)))
        b = " ".join(rng.choice(list("abcd"), size=rng.integers(0, 8)))
        sub, dele, ins = error_kinds(a, b)
        assert sub + dele + ins == word_errors(a.split(), b.split())
        assert len(b.split()) == len(a.split()) - dele + ins  # every hypothesis word is matched, substituted or inserted


def test_normalisation_spells_numbers_and_drops_punctuation():
    assert normalize_words("Dr. Smith paid $5, didn't he?") == normalize_words("doctor smith paid five dollars didn't he")
    assert normalize_words("   ") == []
    c = word_error_rate("I have 2 cats.", "i have two hats")
    assert (c.errors, c.words, c.wer) == (1, 4, 0.25)
    assert (WerCount(1, 4) + WerCount(3, 4)).wer == 0.5


@pytest.fixture(scope="module")
def transcriber():
    return Transcriber()


def test_transcriber_understands_flite_and_hears_nothing_in_silence(transcriber):
    text = "the weather is nice today and we will go for a walk"
    wav = make_speech(text, "slt")
    assert word_error_rate(text, transcriber.transcribe(wav)).wer <= 0.4
    assert transcriber.transcribe(np.zeros(16000, np.float32)) == ""
    assert transcriber.transcribe(np.zeros(0, np.float32)) == ""


def test_transcription_does_not_depend_on_what_came_before(transcriber):
    """pocketsphinx carries noise/CMN estimates across utterances; the transcriber must not (noisy
    speech shows it: without the reset these hypotheses differ after other audio)."""
    rng = np.random.default_rng(0)
    clip = make_speech("she wrote a long letter to her friend overseas", "rms")
    noisy = (clip + 0.02 * rng.standard_normal(len(clip))).astype(np.float32)
    first = Transcriber().transcribe(noisy)
    transcriber.transcribe(0.9 * np.sin(np.arange(32000) * 0.3).astype(np.float32))
    transcriber.transcribe(np.clip(3 * make_speech("hello there", "kal16"), -1, 1))
    assert transcriber.transcribe(noisy) == first
    assert transcriber.transcribe(noisy) == first


def test_transcript_cache_gives_what_decoding_gives(transcriber, tmp_path):
    """A cached transcript is the decoder's own; keys are the exact audio; a torn line (a write cut
    short) is skipped; a second transcriber on the same file decodes nothing it has already heard."""
    a = make_speech("we could hear the waves crashing against the cliffs", "slt")
    b = make_speech("she wrote a long letter to her friend overseas", "rms")
    path = tmp_path / "asr" / "cache.jsonl"
    first = Transcriber(cache=path)
    got = [first.transcribe(a), first.transcribe(b), first.transcribe(a)]
    assert got == [transcriber.transcribe(a), transcriber.transcribe(b), transcriber.transcribe(a)]
    assert first.cache_hits == 1 and len([row for row in path.read_text().splitlines() if row]) == 2
    with path.open("a") as f:
        f.write('\n{"key": "abc", "te')  # a row cut short as this writer would leave it (rows start with their newline)
    second = Transcriber(cache=path)
    second._decoder = None  # it must not decode: any decoding would raise
    assert [second.transcribe(b), second.transcribe(a)] == got[1::-1] and second.cache_hits == 2
    louder = np.clip(a * 1.01, -1, 1)  # other audio, other key: decoded (and would fail here)
    with pytest.raises(AttributeError):
        second.transcribe(louder)
    assert Transcriber(cache=path).transcribe(louder) == transcriber.transcribe(louder)
    third = Transcriber(cache=path)  # the row written after the torn one survived it
    third._decoder = None
    assert third.transcribe(louder) == transcriber.transcribe(louder) and third.cache_hits == 1


# ---- evaluate_cloning on a tiny corpus -------------------------------------------------------------
@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    if not engine_available("flite"):
        pytest.skip("flite or sox is not installed")
    root = tmp_path_factory.mktemp("evalcorpus")
    build_corpus(root, CorpusOptions(seed=1, voices=("flite-slt", "flite-rms", "flite-kal16"), utterances_per_voice=3,
                                     extra_per_voice=1, heldout_voices=1, heldout_sentences=2))  # fmt: skip
    return root, json.loads((root / "manifest.json").read_text())


class RecordingCloner:
    """Stands in for a Cloner: 'clones' by returning the corpus's recording of the text by the voice
    ``shift`` places after the reference's voice (0: a perfect clone; 1: always the wrong voice)."""

    def __init__(self, root, manifest, shift=0, fail=False):
        from rtclone.audio import load_audio

        self.speakers = [str(v["speaker"]) for v in manifest["voices"]]
        self.audio = {(str(u["speaker"]), u["text"]): root / u["path"] for u in manifest["utterances"]}
        self.first = {}
        for u in sorted(manifest["utterances"], key=lambda u: u["id"]):
            self.first.setdefault(str(u["speaker"]), load_audio(root / u["path"])[:4000])
        self.shift, self.fail, self.load = shift, fail, load_audio

    def embed(self, wav, sr):
        (idx,) = [i for i, s in enumerate(self.speakers) if np.array_equal(wav[:4000], self.first[s])]
        return np.eye(len(self.speakers), dtype=np.float32)[idx]

    def clone(self, text, emb, options):
        if self.fail:
            raise AttentionFailureError("stand-in failure")
        spk = self.speakers[(int(np.argmax(emb)) + self.shift) % len(self.speakers)]
        return type("R", (), {"audio": self.load(self.audio[(spk, text)])})


def test_perfect_clone_reaches_the_ground_truth_ceiling(corpus, transcriber):
    root, manifest = corpus
    opts = CloneEvalOptions(seen_voices=2, heldout_voices=1, sentences=2, ref_seconds=3.0)
    report = evaluate_cloning(RecordingCloner(root, manifest), root, opts, transcriber=transcriber)
    assert [r["group"] for r in report["voices"]] == ["seen", "seen", "heldout"]
    assert {r["speaker"] for r in report["voices"]} == {str(v["speaker"]) for v in manifest["voices"]}
    for r in report["voices"]:
        assert r["wer"] == r["gt_wer"] and r["errors"] == r["gt_errors"] and r["words"] > 0
        assert r["similarity"] == pytest.approx(r["gt_similarity"], abs=1e-6)
        assert r["identified"] == 2 == r["gt_identified"]
        assert r["voice_identified"] and r["gt_voice_identified"] and r["voice_nearest"] == r["speaker"] == r["gt_voice_nearest"]
        assert r["reference_s"] >= 3.0
        assert [t["clone"] for t in r["transcripts"]] == [t["recording"] for t in r["transcripts"]]
        assert len(r["transcripts"]) == 2 and all(t["text"] and t["id"] for t in r["transcripts"])
    for s in report["summary"].values():  # what was heard is kept, and its errors split by kind
        assert s["error_kinds"]["clone"] == s["error_kinds"]["recording"] and "teacher_forced" not in s["error_kinds"]
    assert report["failures"] == []
    goals = check_goals(report)
    assert goals["wer_seen_within_1.5x_gt"] and goals["every_clone_closest_to_its_reference"]
    assert "goal every_clone_closest_to_its_reference: met" in format_table(report)


def test_eval_runs_on_a_test_set_of_new_sentences(corpus, transcriber, tmp_path):
    """`rtclone corpus test-set` output is a corpus the eval reads: the new sentences are the held-out
    ones, the references still come from the source's training sentences."""
    from rtclone.corpus import TEST_SENTENCE_BASE, build_test_set

    root, manifest = corpus
    texts = ["The lantern swung gently above the quiet dock.", "Nobody expected the parade to start so early."]
    ts_root = tmp_path / "test"
    ts = build_test_set(root, ts_root, sentences=texts)
    opts = CloneEvalOptions(seen_voices=2, heldout_voices=1, sentences=2, ref_seconds=3.0)
    report = evaluate_cloning(RecordingCloner(ts_root, ts), ts_root, opts, transcriber=transcriber)
    assert [r["speaker"] for r in report["voices"]] == [r["speaker"] for r in evaluate_cloning(
        RecordingCloner(root, manifest), root, CloneEvalOptions(seen_voices=2, heldout_voices=1, sentences=1, ref_seconds=3.0),
        transcriber=transcriber)["voices"]]  # the same voices in the same groups
    for r in report["voices"]:
        assert [t["text"] for t in r["transcripts"]] == texts and r["words"] == sum(len(t.split()) for t in texts)
        assert r["wer"] == r["gt_wer"] and r["identified"] == 2 and r["voice_identified"]
        assert all(i.split("-")[1] == "1" for i in r["reference_ids"])
    assert [u["sentence"] for u in ts["utterances"] if u["text"] == texts[1]][0] == TEST_SENTENCE_BASE + 1


def test_wrong_voice_is_caught_and_failures_count_as_errors(corpus, transcriber, tmp_path):
    from rtclone.audio import load_audio

    root, manifest = corpus
    opts = CloneEvalOptions(seen_voices=2, heldout_voices=1, sentences=1, ref_seconds=3.0)
    wrong = evaluate_cloning(RecordingCloner(root, manifest, shift=1), root, opts, transcriber=transcriber,
                             save_audio=tmp_path / "audio")
    # --save-audio: each voice's reference and each clone (here the next voice's recording), as 16-bit wavs
    speakers = [str(v["speaker"]) for v in manifest["voices"]]
    paths = {(str(u["speaker"]), u["id"]): root / u["path"] for u in manifest["utterances"]}
    text_of = {u["id"]: u["text"] for u in manifest["utterances"]}
    for r in wrong["voices"]:
        folder = tmp_path / "audio" / r["speaker"]
        (t,) = r["transcripts"]
        assert sorted(p.name for p in folder.iterdir()) == sorted(["reference.wav", f"{t['id']}.wav"])
        nxt = speakers[(speakers.index(r["speaker"]) + 1) % len(speakers)]
        (src,) = [p for (spk, uid), p in paths.items() if spk == nxt and text_of[uid] == t["text"]]
        assert np.abs(load_audio(folder / f"{t['id']}.wav") - load_audio(src)).max() < 2 / 32768
        ref_ids = r["reference_ids"]
        first = load_audio(paths[r["speaker"], ref_ids[0]])
        assert np.abs(load_audio(folder / "reference.wav")[:len(first)] - first).max() < 2 / 32768
    for r in wrong["voices"]:
        assert r["identified"] == 0 and r["gt_identified"] == 1  # the ground truth is still told apart
        assert r["similarity"] < r["gt_similarity"] - 0.05
    assert not check_goals(wrong)["every_clone_closest_to_its_reference"]
    assert wrong["summary"]["seen"]["identification"] == 0 and wrong["summary"]["seen"]["gt_identification"] == 1
    speakers = [str(v["speaker"]) for v in manifest["voices"]]  # the voice as a whole is the next one's too
    for r in wrong["voices"]:
        assert not r["voice_identified"] and r["gt_voice_identified"]
        assert r["voice_nearest"] == speakers[(speakers.index(r["speaker"]) + 1) % len(speakers)]
    assert wrong["summary"]["seen"]["voice_identification"] == 0 and wrong["summary"]["seen"]["gt_voice_identification"] == 1
    assert "averaged, are nearest their own reference: 0% (GT 100%)" in format_table(wrong)

    failed = evaluate_cloning(RecordingCloner(root, manifest, fail=True), root, opts, transcriber=transcriber)
    assert len(failed["failures"]) == 3 and "AttentionFailureError" in failed["failures"][0]["error"]
    assert all(r["wer"] == 1.0 and r["similarity"] == 0.0 for r in failed["voices"])
    assert all(r["voice_nearest"] is None and not r["voice_identified"] and r["gt_voice_identified"] for r in failed["voices"])
    assert failed["summary"]["seen"]["wer_ratio"] > 1.5
    words = sum(r["words"] for r in failed["voices"] if r["group"] == "seen")  # a failed clone deleted every word
    assert failed["summary"]["seen"]["error_kinds"]["clone"] == {"substitutions": 0, "deletions": words, "insertions": 0}
    assert f"clone 0 / {words} / 0" in format_table(failed)


def _without_timings(report):
    drop = {"seconds", "shard", "jobs", "asr_cache"}
    return {k: ([{a: b for a, b in r.items() if a != "synthesis_s"} for r in v] if k == "voices" else v)
            for k, v in report.items() if k not in drop}


def test_shards_merge_into_the_whole_report(corpus, tmp_path):
    """Voices dealt to n shards and merged give one run's report: same rows in the same order, same
    summaries and failures; identification in a shard still weighs every voice's reference."""
    root, manifest = corpus
    opts = CloneEvalOptions(seen_voices=2, heldout_voices=1, sentences=1, ref_seconds=3.0)
    asr = Transcriber(cache=tmp_path / "asr.jsonl")  # every run below hears the same recordings
    for cloner in (RecordingCloner(root, manifest, shift=1), RecordingCloner(root, manifest, fail=True)):
        whole = evaluate_cloning(cloner, root, opts, transcriber=asr)
        parts = [evaluate_cloning(cloner, root, opts, transcriber=asr, shard=(k, 2)) for k in (1, 0)]
        assert [len(p["voices"]) for p in parts] == [1, 2] and parts[0]["shard"] == [1, 2]
        merged = merge_reports(parts)
        assert _without_timings(merged) == _without_timings(whole)
        assert [r["gt_identified"] for r in merged["voices"]] == [1, 1, 1]  # the shard of one voice still told it apart
        assert [r["identified"] for r in merged["voices"]] == [0, 0, 0]  # the wrong voice (shift 1) or a failure
    assert [f["speaker"] for f in merged["failures"]] == [r["speaker"] for r in whole["voices"]]
    with pytest.raises(OptionsError):
        merge_reports([parts[0], parts[0]])  # shard 1 twice, shard 0 missing
    with pytest.raises(OptionsError):
        merge_reports(parts[:1])  # a part of two on its own
    with pytest.raises(OptionsError):
        merge_reports([parts[0], {**parts[1], "options": {**parts[1]["options"], "sentences": 2}}])
    with pytest.raises(OptionsError):
        evaluate_cloning(cloner, root, opts, transcriber=asr, shard=(2, 2))


class VocodingCloner(RecordingCloner):
    """A perfect clone whose vocoder is Griffin-Lim (copy synthesis through rtclone.pipeline.Cloner.vocode)."""

    def vocode(self, mel, options):
        from rtclone.pipeline import Cloner
        from rtclone.vocoder_gen import GriffinLimVocoder

        return Cloner(None, None, GriffinLimVocoder()).vocode(mel, options)


def test_copy_synthesis_measures_the_vocoder_alone(corpus, transcriber):
    from rtclone.audio import load_audio, synth_mel
    from rtclone.vocoder_gen import GriffinLimVocoder

    root, manifest = corpus
    opts = CloneEvalOptions(seen_voices=1, heldout_voices=1, sentences=2, ref_seconds=3.0)
    report = evaluate_cloning(VocodingCloner(root, manifest), root, opts, transcriber=transcriber)
    texts = list(manifest["sentences"]["heldout"])[:2]
    for r in report["voices"]:
        errors = 0
        for u in manifest["utterances"]:  # reference: the vocoder on each ground-truth mel, transcribed here
            if str(u["speaker"]) == r["speaker"] and u["sentence"] in texts:
                wav = GriffinLimVocoder().generate(synth_mel(load_audio(root / u["path"])), seed=0, fade_out=0.0)
                errors += word_error_rate(u["text"], Transcriber().transcribe(wav)).errors
        assert r["copy_errors"] == errors and r["copy_wer"] == pytest.approx(errors / r["words"])
        assert 0.6 < r["copy_similarity"] <= r["gt_similarity"] + 0.02  # Griffin-Lim keeps most of the voice
    assert "copy synthesis" in format_table(report)
    words = sum(r["words"] for r in report["voices"] if r["group"] == "seen")
    seen = [r for r in report["voices"] if r["group"] == "seen"]
    assert report["summary"]["seen"]["copy_wer"] == pytest.approx(sum(r["copy_errors"] for r in seen) / words)
    plain = evaluate_cloning(RecordingCloner(root, manifest), root, opts, transcriber=transcriber)  # no vocode()
    assert "copy_wer" not in plain["summary"]["seen"] and "copy synthesis" not in format_table(plain)


class TeacherForcedCloner(VocodingCloner):
    """A perfect clone with a Tacotron synthesizer: only the teacher-forced measurement uses it."""

    def __init__(self, root, manifest, synthesizer):
        super().__init__(root, manifest)
        self.synthesizer = synthesizer

    def embed(self, wav, sr):  # the one-hot voice, padded to the synthesizer's embedding size
        return np.pad(super().embed(wav, sr), (0, 256 - len(self.speakers)))

    def clone(self, text, emb, options):
        return super().clone(text, emb[: len(self.speakers)], options)


def test_teacher_forced_wer_measures_the_synthesizer_without_exposure_bias(corpus, transcriber):
    import torch

    from rtclone.synthesizer import SynthesizerDims, Tacotron

    class Oracle(Tacotron):  # predicts every frame perfectly when fed the true ones
        def forward(self, chars, mels, speakers, generator=None, own_frames=0.0):
            return mels, mels, None, None

    root, manifest = corpus
    opts = CloneEvalOptions(seen_voices=1, heldout_voices=1, sentences=2, ref_seconds=3.0, teacher_forced=True)
    torch.manual_seed(0)
    oracle = evaluate_cloning(TeacherForcedCloner(root, manifest, Oracle(SynthesizerDims.tiny())), root, opts,
                              transcriber=transcriber)  # fmt: skip
    for r in oracle["voices"]:  # teacher forcing a perfect predictor is copy synthesis
        assert r["tf_errors"] == r["copy_errors"] and r["tf_wer"] == pytest.approx(r["copy_errors"] / r["words"])
        assert r["tf_errors"] == sum(sum(error_kinds(t["text"], t["teacher_forced"])) for t in r["transcripts"])
    assert oracle["summary"]["seen"]["tf_wer"] == oracle["summary"]["seen"]["copy_wer"]
    assert "teacher forced" in format_table(oracle)
    untrained = evaluate_cloning(TeacherForcedCloner(root, manifest, Tacotron(SynthesizerDims.tiny()).eval()), root, opts,
                                 transcriber=transcriber)  # fmt: skip
    for g, s in untrained["summary"].items():  # an untrained synthesizer says nothing, teacher forced or not
        assert s["tf_wer"] >= s["copy_wer"] + 0.5, (g, s)
    plain = evaluate_cloning(TeacherForcedCloner(root, manifest, Oracle(SynthesizerDims.tiny())), root,
                             CloneEvalOptions(seen_voices=1, heldout_voices=1, sentences=2, ref_seconds=3.0), transcriber=transcriber)  # fmt: skip
    assert "tf_wer" not in plain["summary"]["seen"] and "teacher forced" not in format_table(plain)


@pytest.mark.parametrize("kw", [dict(seen_voices=-1), dict(seen_voices=0, heldout_voices=0), dict(sentences=0), dict(ref_seconds=0.5)])
def test_options_are_validated(kw):
    with pytest.raises(OptionsError):
        CloneEvalOptions(**kw)


def test_cli_sets_the_griffin_lim_power_of_the_shipped_models(corpus, tmp_path, capsys):
    from rtclone.cli import main

    root, _ = corpus
    out = tmp_path / "eval.json"
    args = ["eval", "clone", str(root), "--seen", "1", "--heldout", "0", "--sentences", "1", "--no-copy-synthesis"]
    assert main(args + ["--griffin-lim-power", "1.5", "--griffin-lim-formants", "0.3", "--griffin-lim-inverter", "off",
                        "-o", str(out), "--json"]) == 0  # fmt: skip
    report = json.loads(out.read_text())
    assert report["griffin_lim_power"] == 1.5 and report["griffin_lim_formants"] == 0.3 and report["models"] == "default"
    assert report["griffin_lim_segments"] == dataclasses.asdict(SegmentPlan())  # streamed in segments by default
    assert report["griffin_lim_inverter"] is None  # --griffin-lim-inverter off
    assert report["summary"]["seen"]["utterances"] == 1 and 0.0 <= report["summary"]["seen"]["wer"] <= 1.0
    assert main(args + ["--griffin-lim-whole", "-o", str(out), "--json"]) == 0  # the pre-streaming way, power kept
    report = json.loads(out.read_text())
    assert report["griffin_lim_segments"] is None and report["griffin_lim_power"] == audio.GRIFFIN_LIM_POWER
    assert report["griffin_lim_formants"] == audio.GRIFFIN_LIM_FORMANTS
    from rtclone.mel_inverter import fingerprint
    from rtclone.pipeline import Cloner

    shipped = Cloner.from_default().vocoder.inverter  # the shipped inverter.pt, kept under the --griffin-lim-* options
    assert report["griffin_lim_inverter"] == (None if shipped is None else fingerprint(shipped))
    if shipped is not None:  # formant enhancement with the inverter: refused with the way out, no traceback
        capsys.readouterr()
        assert main(args + ["--griffin-lim-formants", "0.3"]) != 0
        assert "--griffin-lim-inverter off" in capsys.readouterr().err
    assert "tf_wer" not in report["summary"]["seen"]
    assert main(args + ["--teacher-forced", "-o", str(out), "--json"]) == 0  # the shipped Tacotron, fed the true frames
    report = json.loads(out.read_text())
    assert report["options"]["teacher_forced"] and 0.0 <= report["summary"]["seen"]["tf_wer"] <= 1.0
    cache = tmp_path / "asr.jsonl"
    assert main(args + ["--asr-cache", str(cache), "-o", str(out), "--json"]) == 0
    first = json.loads(out.read_text())
    assert main(args + ["--asr-cache", str(cache), "-o", str(out), "--json"]) == 0  # the same audio again: nothing decoded
    again = json.loads(out.read_text())
    assert first["asr_cache"]["hits"] == 0 and again["asr_cache"]["hits"] == 2  # the recording and the (seeded) clone
    assert again["summary"] == first["summary"] and again["voices"][0]["transcripts"] == first["voices"][0]["transcripts"]
    two = ["eval", "clone", str(root), "--seen", "2", "--heldout", "0", "--sentences", "1", "--no-copy-synthesis", "--json"]
    assert main(two + ["-o", str(out)]) == 0
    serial = json.loads(out.read_text())
    saved = tmp_path / "clones"
    assert main(two + ["--jobs", "2", "--asr-cache", str(cache), "-o", str(out), "--save-audio", str(saved)]) == 0  # one voice per process
    parallel = json.loads(out.read_text())
    assert parallel["jobs"] == 2 and [r["speaker"] for r in parallel["voices"]] == [r["speaker"] for r in serial["voices"]]
    assert sorted(p.relative_to(saved).as_posix() for p in saved.rglob("*.wav")) == sorted(  # both processes wrote theirs
        f"{r['speaker']}/{name}" for r in parallel["voices"] for name in ("reference.wav", f"{r['transcripts'][0]['id']}.wav"))
    assert _without_timings(parallel) == _without_timings(serial)
    assert main(two + ["--jobs", "0"]) != 0
    capsys.readouterr()
    assert main(args + ["--griffin-lim-power", "9"]) != 0  # out of range: a clear error, no traceback
    assert "power" in capsys.readouterr().err
    assert main(args + ["--griffin-lim-formants", "-0.2"]) != 0
    assert "formant" in capsys.readouterr().err


def test_training_speaker_mean_and_the_contrast_flag(corpus, tmp_path, capsys):
    """speaker_mean.npy is the mean of the training voices' reference embeddings (not the held-out ones');
    `eval clone --speaker-contrast A` conditions on it and says so in the report; no mean, a clear error."""
    import shutil
    import subprocess
    import sys

    from rtclone.audio import load_audio, preprocess_wav
    from rtclone.checkpoints import load_encoder
    from rtclone.cli import main
    from rtclone.encoder import embed_utterance
    from rtclone.eval_clone import training_speaker_mean

    root, manifest = corpus
    enc = load_encoder()
    train = {str(v["speaker"]) for v in manifest["voices"] if v["split"] == "train"}
    assert 0 < len(train) < len(manifest["voices"])
    refs = {}
    for u in sorted(manifest["utterances"], key=lambda u: u["id"]):  # each voice's first 5 s of training sentences
        s = str(u["speaker"])
        if s in train and u["sentence"] in manifest["sentences"]["train"] and sum(map(len, refs.get(s, []))) < 5 * 16000:
            refs.setdefault(s, []).append(load_audio(root / u["path"]))
    want = np.mean([embed_utterance(enc, preprocess_wav(np.concatenate(refs[s]), 16000)) for s in sorted(train)], axis=0)
    mean = training_speaker_mean(root, encoder=enc)
    assert mean.shape == (256,) and np.allclose(mean, want, atol=1e-5) and 0.5 < np.linalg.norm(mean) < 1.0
    out_npy = tmp_path / "models" / "speaker_mean.npy"
    out_npy.parent.mkdir()
    script = [sys.executable, str(Path(__file__).resolve().parents[1] / "scripts" / "speaker_mean.py"), str(root), str(out_npy)]
    assert subprocess.run(script, capture_output=True).returncode == 0
    assert np.allclose(np.load(out_npy), mean, atol=1e-6)

    shutil.copy(Path(audio.__file__).parent / "models" / "synthesizer.pt", tmp_path / "models" / "synthesizer.pt")
    out = tmp_path / "eval.json"
    args = ["eval", "clone", str(root), "--seen", "1", "--heldout", "0", "--sentences", "1", "--no-copy-synthesis", "--json"]
    assert main(args + ["--models", str(tmp_path / "models"), "--speaker-contrast", "0.5", "-o", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["speaker_contrast"] == 0.5 and report["summary"]["seen"]["utterances"] == 1 and not report["failures"]
    out_npy.unlink()
    capsys.readouterr()
    assert main(args + ["--models", str(tmp_path / "models"), "--speaker-contrast", "0.5"]) != 0  # no mean: refused up front
    assert "speaker_mean" in capsys.readouterr().out  # --json: the error is the JSON line
    assert main(args + ["--models", str(tmp_path / "models"), "-o", str(out)]) == 0
    assert json.loads(out.read_text())["speaker_contrast"] == 0.0
