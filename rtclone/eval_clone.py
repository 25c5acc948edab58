"""Cloning quality on the built-in corpus: intelligibility (pocketsphinx WER) and speaker similarity.

For each chosen voice — *seen* ones (in the training split) and *held-out* ones (never trained
on) — a reference of about ``ref_seconds`` is cut from its utterances of training sentences, and
the cloner speaks held-out sentences (never trained on) in that voice. Measured per voice:

- ``wer``: pocketsphinx WER of the clone against the sentence text, next to ``gt_wer``, the WER of
  the corpus's own recording of the same voice saying the same sentences (the ceiling: the
  recogniser is not perfect even on the real thing);
- ``similarity``: cosine between the pretrained encoder's embeddings of each clone and of the
  reference, next to ``gt_similarity`` (the real recording against the same reference);
- identification: whether each clone is closer to its own reference than to every other voice's
  reference in the set (``identified``, per utterance), and whether the voice's clones as a whole are
  (``voice_identified``: the normalised mean of their embeddings, as an utterance embedding averages
  its partial windows, nearest the own reference). One 2-3 s utterance is a noisy sample of a voice:
  on the built-in corpus even the recordings miss their own reference per utterance one time in five;
  the per-voice reading asks whether the clone *speaks in* the voice;
- optionally ``copy_wer`` (the vocoder alone on the ground-truth mels) and ``tf_wer`` (the
  synthesizer teacher-forced on the ground-truth frames, then vocoded: what it makes when every
  previous frame it is fed is right). Clone WER above ``tf_wer`` is exposure bias: the decoder
  going astray on its own frames; ``tf_wer`` above ``copy_wer`` is its per-frame prediction error.

Each voice's row keeps what the recogniser heard in every utterance (``transcripts``: the clone's,
the recording's and, teacher forced, the synthesizer's), and each group's summary splits the word
errors into substitutions, deletions and insertions (``error_kinds``): mumbled words or skipped ones.

:func:`check_goals` compares the summary with the issue's goals.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .asr import Transcriber, WerCount, error_kinds, word_error_rate
from .errors import OptionsError, RtcloneError

__all__ = ["CloneEvalOptions", "evaluate_cloning", "merge_reports", "check_goals", "format_table", "GOALS"]

# the goals of the main-job issue
GOALS = {"wer_ratio_seen": 1.5, "similarity_seen": 0.80, "similarity_heldout": 0.70, "identification": 1.0}


@dataclass(frozen=True)
class CloneEvalOptions:
    """Which voices and sentences to evaluate (validated here)."""

    seen_voices: int = 8  # first N training voices of the corpus (0 = none)
    heldout_voices: int = 4  # first N held-out voices (0 = none)
    sentences: int = 5  # held-out sentences per voice
    ref_seconds: float = 5.0  # reference length (whole utterances until at least this long)
    seed: int = 0  # synthesis seed
    copy_synthesis: bool = True  # also vocode each ground-truth mel: the vocoder's own share of the errors
    teacher_forced: bool = False  # also vocode the synthesizer's teacher-forced mels (a Tacotron synthesizer only)

    def __post_init__(self) -> None:
        for name in ("seen_voices", "heldout_voices", "sentences"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise OptionsError(f"{name} must be a non-negative integer, got {v!r}")
        if self.seen_voices + self.heldout_voices == 0 or self.sentences == 0:
            raise OptionsError("nothing to evaluate: need at least one voice and one sentence")
        if not 1.0 <= float(self.ref_seconds) <= 60.0:
            raise OptionsError(f"ref_seconds must be in [1, 60], got {self.ref_seconds!r}")


def _pick_voices(manifest: dict, options: CloneEvalOptions) -> list[tuple[dict, str]]:
    seen = [v for v in manifest["voices"] if v["split"] == "train"][: options.seen_voices]
    held = [v for v in manifest["voices"] if v["split"] != "train"][: options.heldout_voices]
    return [(v, "seen") for v in seen] + [(v, "heldout") for v in held]


def _read_corpus(root: Path) -> tuple[dict, set[int], dict[str, list[dict]]]:
    """A built corpus's manifest, its training sentence ids, and its utterances grouped by speaker id."""
    manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    by_speaker: dict[str, list[dict]] = {}
    for u in manifest["utterances"]:
        by_speaker.setdefault(str(u["speaker"]), []).append(u)
    return manifest, set(manifest["sentences"]["train"]), by_speaker


def _reference(root: Path, utts: list[dict], train_sentences: set[int], seconds: float) -> tuple[np.ndarray, list[str]]:
    from .audio import load_audio

    parts, ids, n = [], [], 0
    for u in sorted(utts, key=lambda u: u["id"]):
        if u["sentence"] not in train_sentences:
            continue
        wav = load_audio(root / u["path"])
        parts.append(wav)
        ids.append(u["id"])
        n += len(wav)
        if n >= seconds * 16000:
            break
    if not parts:
        raise RtcloneError("no reference utterance found for a voice")
    return np.concatenate(parts), ids


def evaluate_cloning(cloner: Any, corpus: str | Path, options: CloneEvalOptions = CloneEvalOptions(), *,
                     transcriber: Transcriber | None = None, encoder: Any = None,
                     log: Callable[[str], None] | None = None, shard: tuple[int, int] = (0, 1),
                     save_audio: str | Path | None = None) -> dict[str, Any]:  # fmt: skip
    """Clone held-out sentences in seen and held-out voices of a built corpus and measure them.

    ``cloner`` is a :class:`rtclone.pipeline.Cloner`; similarity always uses ``encoder`` (default:
    the pretrained encoder), whatever encoder the cloner conditions on. A clone that fails (e.g.
    the synthesizer's attention fails) counts as all words wrong and is listed under ``failures``.
    ``shard=(k, n)``: only every n-th voice from the k-th (identification still against every
    voice's reference); :func:`merge_reports` joins the n parts into the whole report. ``save_audio``: a folder
    that receives ``<speaker>/reference.wav`` and ``<speaker>/<utterance id>.wav`` (each clone) of the voices
    evaluated here.
    """
    from .audio import load_audio, preprocess_wav, save_wav, synth_mel
    from .checkpoints import load_encoder
    from .encoder import embed_utterance
    from .pipeline import SynthesisOptions

    root = Path(corpus)
    manifest, train_sentences, by_speaker = _read_corpus(root)
    transcriber = transcriber or Transcriber()
    encoder = encoder if encoder is not None else load_encoder()
    heldout_sentences = list(manifest["sentences"]["heldout"])[: options.sentences]

    def embed(wav: np.ndarray) -> np.ndarray:
        return embed_utterance(encoder, preprocess_wav(wav, 16000))

    k, n = _check_shard(shard)
    voices = _pick_voices(manifest, options)
    copy = options.copy_synthesis and hasattr(cloner, "vocode")
    forced = options.teacher_forced and hasattr(cloner, "vocode") and _is_tacotron(getattr(cloner, "synthesizer", None))
    refs = {}
    for v, _ in voices:
        wav, ids = _reference(root, by_speaker[str(v["speaker"])], train_sentences, options.ref_seconds)
        refs[str(v["speaker"])] = (wav, ids, embed(wav))
    speakers = [str(v["speaker"]) for v, _ in voices]
    ref_matrix = np.stack([refs[s][2] for s in speakers])  # (V, D)

    rows, failures = [], []
    t_start = time.perf_counter()
    for v, group in voices[k::n]:
        spk = str(v["speaker"])
        ref_wav, ref_ids, ref_emb = refs[spk]
        voice_emb = cloner.embed(ref_wav, 16000)
        out_dir = Path(save_audio) / spk if save_audio is not None else None
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            save_wav(out_dir / "reference.wav", ref_wav)
        utt_of = {u["sentence"]: u for u in by_speaker[spk]}
        wer, gt_wer, sims, gt_sims, hits, seconds, synth_s = WerCount(0, 0), WerCount(0, 0), [], [], 0, 0.0, 0.0
        copy_wer, copy_sims, gt_hits, tf_wer = WerCount(0, 0), [], 0, WerCount(0, 0)
        clone_embs, gt_embs = [], []
        transcripts: list[dict[str, str]] = []
        for s in heldout_sentences:
            u = utt_of[s]
            gt = load_audio(root / u["path"])
            heard = {"id": u["id"], "text": u["text"], "clone": "", "recording": transcriber.transcribe(gt)}
            transcripts.append(heard)
            gt_wer = gt_wer + word_error_rate(u["text"], heard["recording"])
            gt_emb = embed(gt)
            gt_embs.append(gt_emb)
            gt_sims.append(float(np.dot(gt_emb, ref_emb)))
            gt_hits += int(speakers[int(np.argmax(ref_matrix @ gt_emb))] == spk)
            if copy:
                voc = cloner.vocode(synth_mel(gt), SynthesisOptions(seed=options.seed))
                copy_wer = copy_wer + word_error_rate(u["text"], transcriber.transcribe(voc) if len(voc) else "")
                try:
                    copy_sims.append(float(np.dot(embed(voc), ref_emb)))
                except RtcloneError:  # a vocoder that makes silence has no voice either
                    copy_sims.append(0.0)
            if forced:
                voc = cloner.vocode(_teacher_forced_mel(cloner.synthesizer, u["text"], synth_mel(gt), voice_emb, options.seed),
                                    SynthesisOptions(seed=options.seed))  # fmt: skip
                heard["teacher_forced"] = transcriber.transcribe(voc) if len(voc) else ""
                tf_wer = tf_wer + word_error_rate(u["text"], heard["teacher_forced"])
            t0 = time.perf_counter()
            try:
                out = cloner.clone(u["text"], voice_emb, SynthesisOptions(seed=options.seed)).audio
            except RtcloneError as exc:
                failures.append({"speaker": spk, "id": u["id"], "error": f"{type(exc).__name__}: {exc}"})
                wer = wer + word_error_rate(u["text"], "")
                sims.append(0.0)  # a failed clone has no voice: counts against similarity too
                continue
            finally:
                synth_s += time.perf_counter() - t0
            seconds += len(out) / 16000
            if out_dir is not None and len(out):
                save_wav(out_dir / f"{u['id']}.wav", out)
            heard["clone"] = transcriber.transcribe(out) if len(out) else ""
            wer = wer + word_error_rate(u["text"], heard["clone"])
            try:
                e = embed(out)
            except RtcloneError:  # silent/too short output: no voice at all
                sims.append(0.0)
                continue
            sims.append(float(np.dot(e, ref_emb)))
            hits += int(speakers[int(np.argmax(ref_matrix @ e))] == spk)
            clone_embs.append(e)
        voice_nearest, gt_voice_nearest = _nearest(clone_embs, ref_matrix, speakers), _nearest(gt_embs, ref_matrix, speakers)
        row = {"speaker": spk, "voice": v["name"], "group": group, "reference_ids": ref_ids,
               "reference_s": round(len(ref_wav) / 16000, 2), "sentences": len(heldout_sentences),
               "wer": wer.wer, "gt_wer": gt_wer.wer, "words": wer.words, "errors": wer.errors, "gt_errors": gt_wer.errors,
               "similarity": float(np.mean(sims)) if sims else 0.0, "gt_similarity": float(np.mean(gt_sims)),
               "identified": hits, "gt_identified": gt_hits,
               "voice_identified": voice_nearest == spk, "gt_voice_identified": gt_voice_nearest == spk,
               "voice_nearest": voice_nearest, "gt_voice_nearest": gt_voice_nearest, "audio_s": round(seconds, 2), "synthesis_s": round(synth_s, 2),
               "transcripts": transcripts}  # fmt: skip
        if copy:
            row.update(copy_wer=copy_wer.wer, copy_errors=copy_wer.errors, copy_similarity=float(np.mean(copy_sims)))
        if forced:
            row.update(tf_wer=tf_wer.wer, tf_errors=tf_wer.errors)
        rows.append(row)
        if log is not None:
            log(f"{spk} {v['name']:<24} {group:<8} wer {row['wer']:.3f} (gt {row['gt_wer']:.3f}) sim {row['similarity']:.3f} "
                f"(gt {row['gt_similarity']:.3f}) identified {hits}/{len(heldout_sentences)}")
    report = _assemble(str(root), asdict(options), rows, failures, round(time.perf_counter() - t_start, 1))
    if n > 1:
        report["shard"] = [k, n]
    return report


def _nearest(embeddings: list[np.ndarray], ref_matrix: np.ndarray, speakers: list[str]) -> str | None:
    """The speaker whose reference is nearest the normalised mean of ``embeddings`` (None for none)."""
    if not embeddings:
        return None
    mean = np.mean(embeddings, axis=0)
    return speakers[int(np.argmax(ref_matrix @ (mean / max(float(np.linalg.norm(mean)), 1e-12))))]


def _assemble(corpus: str, options: dict, rows: list[dict], failures: list[dict], seconds: float) -> dict[str, Any]:
    summary = {g: _summarise([r for r in rows if r["group"] == g]) for g in ("seen", "heldout")}
    return {"corpus": corpus, "options": options, "voices": rows, "failures": failures,
            "summary": {g: s for g, s in summary.items() if s is not None}, "seconds": seconds}


def _check_shard(shard: Any) -> tuple[int, int]:
    try:
        k, n = (int(x) for x in shard)
    except (TypeError, ValueError):
        raise OptionsError(f"shard must be a pair (k, n), got {shard!r}") from None
    if n < 1 or not 0 <= k < n:
        raise OptionsError(f"shard (k, n) needs 0 <= k < n, got {shard!r}")
    return k, n


def merge_reports(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The report of the whole voice set from the n reports of ``evaluate_cloning(..., shard=(k, n))``,
    k = 0..n-1 in any order: the voices in the order one run would have them, the summaries of all;
    ``seconds`` is the longest part's (the parts run side by side)."""
    if not parts:
        raise OptionsError("no reports to merge")
    n = len(parts)
    by_k = {}
    for p in parts:
        k, m = _check_shard(p.get("shard", (0, 1)))
        if m != n or k in by_k:
            raise OptionsError(f"the reports are not the {n} shards of one eval (shard {p.get('shard')!r})")
        if (p["corpus"], p["options"]) != (parts[0]["corpus"], parts[0]["options"]):
            raise OptionsError("the reports are of different corpora or options")
        by_k[k] = p
    total = sum(len(p["voices"]) for p in parts)
    if any(len(by_k[k]["voices"]) != len(range(k, total, n)) for k in range(n)):
        raise OptionsError("the shards' voice counts do not add up to one eval's")
    rows = [by_k[i % n]["voices"][i // n] for i in range(total)]
    failures = [f for r in rows for p in parts for f in p["failures"] if f["speaker"] == r["speaker"]]
    return _assemble(parts[0]["corpus"], parts[0]["options"], rows, failures, max(p["seconds"] for p in parts))


def _is_tacotron(model: Any) -> bool:
    from .synthesizer import Tacotron

    return isinstance(model, Tacotron)


def _teacher_forced_mel(model: Any, text: str, mel: np.ndarray, embedding: np.ndarray, seed: int) -> np.ndarray:
    """The synthesizer's postnet mel (80, T) for ``text`` when fed the true frames ``mel`` (80, T)."""
    import torch

    from .synthesizer import encode_texts

    chars = encode_texts([text], model.dims.num_chars)
    with torch.no_grad():
        _, post, _, _ = model(chars, torch.from_numpy(np.ascontiguousarray(mel, np.float32))[None],
                              torch.from_numpy(np.asarray(embedding, np.float32))[None], torch.Generator().manual_seed(seed))
    return post[0].numpy()


def _summarise(rows: list[dict]) -> dict[str, Any] | None:
    if not rows:
        return None
    words = sum(r["words"] for r in rows)
    wer = sum(r["errors"] for r in rows) / words
    gt_wer = sum(r["gt_errors"] for r in rows) / words
    n = sum(r["sentences"] for r in rows)
    return {"voices": len(rows), "utterances": n, "wer": wer, "gt_wer": gt_wer,
            "wer_ratio": wer / gt_wer if gt_wer > 0 else (1.0 if wer == 0 else float("inf")),
            "similarity": float(np.mean([r["similarity"] for r in rows])),
            "min_similarity": float(min(r["similarity"] for r in rows)),
            "gt_similarity": float(np.mean([r["gt_similarity"] for r in rows])),
            "identification": sum(r["identified"] for r in rows) / n,
            "gt_identification": sum(r["gt_identified"] for r in rows) / n,
            "voice_identification": sum(r["voice_identified"] for r in rows) / len(rows),
            "gt_voice_identification": sum(r["gt_voice_identified"] for r in rows) / len(rows),
            **({"copy_wer": sum(r["copy_errors"] for r in rows) / words,
                "copy_similarity": float(np.mean([r["copy_similarity"] for r in rows]))}
               if all("copy_errors" in r for r in rows) else {}),
            **({"tf_wer": sum(r["tf_errors"] for r in rows) / words} if all("tf_errors" in r for r in rows) else {}),
            "error_kinds": _error_kinds(rows)}  # fmt: skip


def _error_kinds(rows: list[dict]) -> dict[str, dict[str, int]]:
    """{"clone" / "recording" / "teacher_forced": {"substitutions", "deletions", "insertions"}} over
    the rows' transcripts (teacher forced only when every utterance has one)."""
    heard = [t for r in rows for t in r.get("transcripts", [])]
    out = {}
    for key in ("clone", "recording", "teacher_forced"):
        if heard and all(key in t for t in heard):
            kinds = np.sum([error_kinds(t["text"], t[key]) for t in heard], axis=0)
            out[key] = dict(zip(("substitutions", "deletions", "insertions"), (int(k) for k in kinds)))
    return out


def check_goals(report: dict[str, Any]) -> dict[str, bool]:
    """Each goal of the main-job issue → met or not (only for the groups evaluated)."""
    s = report["summary"]
    goals: dict[str, bool] = {}
    if "seen" in s:
        goals["wer_seen_within_1.5x_gt"] = s["seen"]["wer_ratio"] <= GOALS["wer_ratio_seen"]
        goals["similarity_seen_>=0.80"] = s["seen"]["similarity"] >= GOALS["similarity_seen"]
    if "heldout" in s:
        goals["similarity_heldout_>=0.70"] = s["heldout"]["similarity"] >= GOALS["similarity_heldout"]
    goals["every_clone_closest_to_its_reference"] = all(g["identification"] >= GOALS["identification"] for g in s.values())
    return goals


def format_table(report: dict[str, Any]) -> str:
    """The per-voice rows, the group summaries and the goals as a text table."""
    lines = [f"{'speaker':<8}{'voice':<26}{'group':<9}{'WER':>7}{'GT WER':>8}{'sim':>7}{'GT sim':>8}{'ident':>7}"]
    for r in report["voices"]:
        lines.append(f"{r['speaker']:<8}{r['voice']:<26}{r['group']:<9}{r['wer']:>7.3f}{r['gt_wer']:>8.3f}"
                     f"{r['similarity']:>7.3f}{r['gt_similarity']:>8.3f}{r['identified']:>4}/{r['sentences']:<2}")  # fmt: skip
    for g, s in report["summary"].items():
        lines.append(f"{g:<8}{s['voices']} voices, {s['utterances']} utterances: WER {s['wer']:.3f} (GT {s['gt_wer']:.3f}, "
                     f"ratio {s['wer_ratio']:.2f}), similarity {s['similarity']:.3f} (min {s['min_similarity']:.3f}, "
                     f"GT {s['gt_similarity']:.3f}), identified {s['identification']:.0%} (GT {s['gt_identification']:.0%})")  # fmt: skip
    for g, s in report["summary"].items():
        lines.append(f"{g:<8}voices whose clones, averaged, are nearest their own reference: {s['voice_identification']:.0%} "
                     f"(GT {s['gt_voice_identification']:.0%})")
    for g, s in report["summary"].items():
        if "copy_wer" in s:
            lines.append(f"{g:<8}vocoder alone on ground-truth mels (copy synthesis): WER {s['copy_wer']:.3f}, "
                         f"similarity {s['copy_similarity']:.3f}")
    for g, s in report["summary"].items():
        if s.get("error_kinds"):
            kinds = ", ".join(f"{k.replace('_', ' ')} {v['substitutions']} / {v['deletions']} / {v['insertions']}"
                              for k, v in s["error_kinds"].items())
            lines.append(f"{g:<8}word errors, substituted / deleted / inserted: {kinds}")
    for g, s in report["summary"].items():
        if "tf_wer" in s:
            lines.append(f"{g:<8}synthesizer fed the true previous frames (teacher forced), vocoded: WER {s['tf_wer']:.3f}")
    if report["failures"]:
        lines.append(f"{len(report['failures'])} clone(s) failed, e.g. {report['failures'][0]['error']}")
    for name, ok in check_goals(report).items():
        lines.append(f"goal {name}: {'met' if ok else 'NOT met'}")
    return "\n".join(lines)


def training_speaker_mean(corpus: str | Path, *, seconds: float = 5.0, encoder: Any = None) -> np.ndarray:
    """The mean (not normalised) of the pretrained encoder's embeddings of each training voice of a built
    corpus, one ``seconds`` reference of its training sentences each (as ``evaluate_cloning`` takes
    references): the ``speaker_mean.npy`` that ``Cloner.speaker_contrast`` pushes embeddings away from."""
    from .audio import preprocess_wav
    from .checkpoints import load_encoder
    from .encoder import embed_utterance

    root = Path(corpus)
    manifest, train_sentences, by_speaker = _read_corpus(root)
    encoder = encoder if encoder is not None else load_encoder()
    voices = [str(v["speaker"]) for v in manifest["voices"] if v["split"] == "train"]
    if not voices:
        raise RtcloneError(f"{root}: no training voices in the manifest")
    embs = [embed_utterance(encoder, preprocess_wav(_reference(root, by_speaker[s], train_sentences, seconds)[0], 16000))
            for s in voices]  # fmt: skip
    return np.mean(embs, axis=0).astype(np.float32)
