"""Confidence intervals of clone-eval reports (rtclone.eval_stats, `rtclone eval stats`)."""

import json
from pathlib import Path

import numpy as np
import pytest

from rtclone.cli import main
from rtclone.errors import OptionsError
from rtclone.eval_stats import _crossed_draws, _resampled_sums, compare_reports, error_table, ratio_interval

ROOT = Path(__file__).resolve().parents[1]
STORED = ROOT / "benchmarks" / "results" / "eval_clone_20sent_wide_ss_step20000.json"
WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"]


def _report(clone_errors: np.ndarray, recording_errors: np.ndarray, group: str = "seen") -> dict:
    """A report whose voice v reads sentence s (six words) with clone_errors[v, s] and recording_errors[v, s]
    words replaced by 'x'."""
    def said(k: int) -> str:
        return " ".join(["x"] * int(k) + WORDS[int(k):])

    voices = []
    for v, (ce, ge) in enumerate(zip(clone_errors, recording_errors)):
        voices.append({"speaker": str(100 + v), "group": group, "errors": int(ce.sum()), "gt_errors": int(ge.sum()),
                       "transcripts": [{"id": f"{100 + v}-2-{s:04d}", "text": " ".join(WORDS), "clone": said(c),
                                        "recording": said(g)} for s, (c, g) in enumerate(zip(ce, ge))]})
    return {"voices": voices, "summary": {group: {}}}


def test_error_table_reproduces_a_stored_reports_counts():
    report = json.loads(STORED.read_text())
    for group in ("seen", "heldout"):
        speakers, ids, errors, words = error_table(report, group)
        rows = [r for r in report["voices"] if r["group"] == group]
        assert speakers == [r["speaker"] for r in rows] and len(ids) == 20
        assert errors.sum(axis=1).tolist() == [r["errors"] for r in rows]
        assert words.sum(axis=1).tolist() == [r["words"] for r in rows]
        _, _, gt, _ = error_table(report, group, "recording")
        assert gt.sum(axis=1).tolist() == [r["gt_errors"] for r in rows]
        s = ratio_interval(report, group, resamples=500)
        assert s["wer_ratio"] == pytest.approx(report["summary"][group]["wer_ratio"])
        assert s["wer"] == pytest.approx(report["summary"][group]["wer"])


def test_resampled_sums_are_the_sums_over_each_draws_voices_and_sentences():
    rng = np.random.default_rng(1)
    table = rng.integers(0, 5, (5, 7))
    dv, ds = _crossed_draws(5, 7, 50, seed=3)
    expected = [table[np.ix_(v, s)].sum() for v, s in zip(dv, ds)]
    assert _resampled_sums(table, dv, ds).tolist() == pytest.approx(expected)


def test_comparison_of_a_report_with_itself_and_with_a_uniformly_better_one():
    rng = np.random.default_rng(0)
    a_err, gt = rng.integers(1, 4, (6, 10)), rng.integers(0, 2, (6, 10))
    a = _report(a_err, gt)
    same = compare_reports(a, a, resamples=300)
    assert same["difference"] == 0 and same["difference_interval"] == [0.0, 0.0] and same["b_better_share"] == 0.0
    better = compare_reports(a, _report(a_err - 1, gt), resamples=300)  # one error fewer in every utterance
    assert better["difference"] == -60 and better["difference_interval"][1] < 0 and better["b_better_share"] == 1.0
    sub = compare_reports(a, _report(a_err - 1, gt), sentences=[0, 1], resamples=300)
    assert (sub["sentences"], sub["difference"], sub["words"]) == (2, -12, 6 * 2 * 6)


def test_ratio_interval_covers_the_true_ratio():
    """Voices and sentences drawn from a population whose clone WER is 1.5x the recordings': the crossed
    bootstrap's 90 % interval holds 1.5 in at least 85 % of 60 simulated evals (it is conservative)."""
    rng = np.random.default_rng(7)
    hits = 0
    for trial in range(60):
        voice, sentence = rng.gamma(4, 0.25, (8, 1)), rng.gamma(4, 0.25, (1, 20))  # mean-1 difficulty factors
        rate = np.clip(0.12 * voice * sentence, 0, 0.6)
        gt = rng.binomial(6, rate)
        clone = rng.binomial(6, np.clip(1.5 * rate, 0, 0.9))
        lo, hi = ratio_interval(_report(clone, gt), resamples=400, level=0.9, seed=trial)["wer_ratio_interval"]
        hits += lo <= 1.5 <= hi
    assert hits >= 51


def test_bad_inputs_get_clear_errors(tmp_path):
    a = _report(np.ones((2, 3), int), np.zeros((2, 3), int))
    with pytest.raises(OptionsError, match="no 'heldout' voices"):
        error_table(a, "heldout")
    short = _report(np.ones((2, 2), int), np.zeros((2, 2), int))
    with pytest.raises(OptionsError, match="differ"):
        compare_reports(a, short)
    with pytest.raises(OptionsError, match="sentence indices"):
        compare_reports(a, a, sentences=[5])
    shuffled = json.loads(json.dumps(a))
    shuffled["voices"][1]["transcripts"][0]["text"] = "other words"
    with pytest.raises(OptionsError, match="same sentences"):
        error_table(shuffled, "seen")
    old = json.loads(json.dumps(a))
    del old["voices"][0]["transcripts"]
    with pytest.raises(OptionsError, match="no transcripts"):
        error_table(old, "seen")
    path = tmp_path / "a.json"
    path.write_text(json.dumps(a))
    (tmp_path / "bad.json").write_text("{not json")
    assert main(["eval", "stats", str(tmp_path / "bad.json")]) == 2
    assert main(["eval", "stats", str(path), str(path), str(path)]) == 2
    assert main(["eval", "stats", str(path), str(path), "--sentences", "1-x"]) == 2
    assert main(["eval", "stats", str(path), "--sentences", "0-1"]) == 2


def test_cli_writes_the_comparison(tmp_path, capsys):
    rng = np.random.default_rng(2)
    err, gt = rng.integers(1, 4, (4, 5)), rng.integers(0, 2, (4, 5))
    (tmp_path / "a.json").write_text(json.dumps(_report(err, gt)))
    (tmp_path / "b.json").write_text(json.dumps(_report(err - 1, gt)))
    out = tmp_path / "cmp.json"
    assert main(["eval", "stats", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--sentences", "0-1,4",
                 "--resamples", "200", "-o", str(out)]) == 0
    row = json.loads(out.read_text())["rows"][0]
    assert (row["group"], row["sentences"], row["errors_a"] - row["errors_b"]) == ("seen", 3, 12)
    assert "B fewer in 100% of resamples" in capsys.readouterr().out
