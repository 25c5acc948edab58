"""How sure is a clone eval's figure? Confidence intervals for ``rtclone eval clone`` reports.

A report keeps every transcript (clone and recording, per voice and sentence), so its word errors can be
resampled. The design is crossed: every voice reads every sentence, and both the voices and the sentences
are samples (a hard sentence is hard for all voices, a muffled voice for all sentences). So the bootstrap
draws voices and sentences independently, with replacement, and takes every pair of the two draws
(a two-way, "crossed" bootstrap); resampling the pairs alone would ignore both correlations and give
intervals that are too narrow.

- :func:`ratio_interval`: a report's WER against its recordings' WER (the 1.5× goal), with an interval.
- :func:`compare_reports`: two reports of the same voices and sentences (e.g. two checkpoints): the
  change in clone word errors, its interval and the share of resamples in which the second one wins.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .asr import normalize_words, word_errors
from .errors import OptionsError


def error_table(report: dict[str, Any], group: str, key: str = "clone") -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """(speakers, sentence ids, errors[voice, sentence], words[voice, sentence]) of ``key``'s transcripts
    ("clone", "recording" or "teacher_forced") for one group ("seen" / "heldout") of a report."""
    rows = [r for r in report.get("voices", []) if r.get("group") == group]
    if not rows:
        raise OptionsError(f"the report has no {group!r} voices")
    if any("transcripts" not in r for r in rows):
        raise OptionsError("the report keeps no transcripts (made before rtclone eval clone stored them): re-run the eval")
    # sentence i of every voice is the same text (the voices' ids differ by speaker prefix)
    n = len(rows[0]["transcripts"])
    texts = [t["text"] for t in rows[0]["transcripts"]]
    if any([t["text"] for t in r["transcripts"]] != texts for r in rows):
        raise OptionsError(f"the {group} voices did not read the same sentences: not a crossed design")
    errors, words = np.zeros((len(rows), n), np.int64), np.zeros((len(rows), n), np.int64)
    for v, r in enumerate(rows):
        for s, t in enumerate(r["transcripts"]):
            if key not in t:
                raise OptionsError(f"the report has no {key!r} transcripts")
            ref = normalize_words(t["text"])
            errors[v, s], words[v, s] = word_errors(ref, normalize_words(t[key])), len(ref)
    ids = [t["id"].split("-", 1)[1] for t in rows[0]["transcripts"]]
    return [r["speaker"] for r in rows], ids, errors, words


def _crossed_draws(n_voices: int, n_sentences: int, resamples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, n_voices, (resamples, n_voices)), rng.integers(0, n_sentences, (resamples, n_sentences))


def _resampled_sums(table: np.ndarray, voices: np.ndarray, sentences: np.ndarray) -> np.ndarray:
    """Σ table[v, s] over each resample's voices × sentences (with their multiplicities)."""
    nv, ns = table.shape
    cv = np.stack([np.bincount(d, minlength=nv) for d in voices])  # (B, nv) times each voice was drawn
    cs = np.stack([np.bincount(d, minlength=ns) for d in sentences])
    return np.einsum("bv,vs,bs->b", cv, table.astype(np.float64), cs)


def _interval(samples: np.ndarray, level: float) -> list[float]:
    lo, hi = np.quantile(samples, [(1 - level) / 2, (1 + level) / 2])
    return [float(lo), float(hi)]


def ratio_interval(report: dict[str, Any], group: str = "seen", *, resamples: int = 10_000, level: float = 0.95,
                   seed: int = 0) -> dict[str, Any]:
    """The clones' WER over the recordings' (the eval's ``wer_ratio``) with a crossed-bootstrap interval."""
    _, _, clone, words = error_table(report, group, "clone")
    _, _, recording, _ = error_table(report, group, "recording")
    dv, ds = _crossed_draws(*clone.shape, resamples, seed)
    c, g = _resampled_sums(clone, dv, ds), _resampled_sums(recording, dv, ds)
    ratios = c[g > 0] / g[g > 0]
    return {"group": group, "voices": clone.shape[0], "sentences": clone.shape[1], "words": int(words.sum()),
            "errors": int(clone.sum()), "gt_errors": int(recording.sum()),
            "wer": float(clone.sum() / words.sum()), "gt_wer": float(recording.sum() / words.sum()),
            "wer_ratio": float(clone.sum() / recording.sum()) if recording.sum() else float("inf"),
            "wer_ratio_interval": _interval(ratios, level), "level": level, "resamples": resamples}


def compare_reports(a: dict[str, Any], b: dict[str, Any], group: str = "seen", *, resamples: int = 10_000,
                    level: float = 0.95, seed: int = 0, sentences: Sequence[int] | None = None) -> dict[str, Any]:
    """B's clone word errors minus A's on the same voices and sentences, with a paired crossed-bootstrap
    interval and the share of resamples in which B makes fewer errors. ``sentences`` (indices) restricts both
    to a subset, e.g. the ones a checkpoint was not chosen on."""
    sa, ia, ea, words = error_table(a, group)
    sb, ib, eb, _ = error_table(b, group)
    if sentences is not None:
        if not sentences or max(sentences) >= min(len(ia), len(ib)) or min(sentences) < 0:
            raise OptionsError(f"sentence indices must lie in 0..{min(len(ia), len(ib)) - 1}")
        ia, ib = [ia[i] for i in sentences], [ib[i] for i in sentences]
        ea, eb, words = ea[:, sentences], eb[:, sentences], words[:, sentences]
    if sa != sb or ia != ib:
        raise OptionsError(f"the reports' {group} voices or sentences differ: compare evals made with the same "
                           "corpus and --seen/--heldout/--sentences")
    dv, ds = _crossed_draws(*ea.shape, resamples, seed)
    diff = _resampled_sums(eb - ea, dv, ds)
    return {"group": group, "voices": ea.shape[0], "sentences": ea.shape[1], "words": int(words.sum()),
            "errors_a": int(ea.sum()), "errors_b": int(eb.sum()), "difference": int(eb.sum() - ea.sum()),
            "difference_interval": _interval(diff, level), "b_better_share": float(np.mean(diff < 0)),
            "level": level, "resamples": resamples}


def format_stats(rows: list[dict[str, Any]]) -> str:
    """One line per interval or comparison."""
    lines = []
    for r in rows:
        pct = f"{r['level']:.0%}"
        if "wer_ratio" in r:
            lo, hi = r["wer_ratio_interval"]
            lines.append(f"{r['group']:<8}{r['voices']} voices x {r['sentences']} sentences: WER {r['wer']:.3f} / "
                         f"ground truth {r['gt_wer']:.3f} = {r['wer_ratio']:.2f}x ({pct} interval {lo:.2f}-{hi:.2f})")
        else:
            lo, hi = r["difference_interval"]
            lines.append(f"{r['group']:<8}{r['voices']} voices x {r['sentences']} sentences: errors {r['errors_a']} -> "
                         f"{r['errors_b']} ({r['difference']:+d}, {pct} interval {lo:+.0f} to {hi:+.0f}); "
                         f"B fewer in {r['b_better_share']:.0%} of resamples")
    return "\n".join(lines)
