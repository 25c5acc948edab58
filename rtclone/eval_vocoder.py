"""How intelligible is a trained vocoder? ``rtclone eval vocoder``: a WaveRNN against Griffin-Lim on the same mels.

For a fixed sample of items of a prepared set (``rtclone train synthesizer --prepare-only``: its
``metadata.json`` texts, ``mels/<id>.npy`` and trimmed ``audio/<id>.npy``) it vocodes the
ground-truth mel, and with a GTA export (``rtclone train gta``) also the synthesizer's
teacher-forced mel, with the checkpoint and with the Griffin-Lim baseline, and reports per source:

- ``wer``: pocketsphinx word error rate over all picked items (the recordings' own as the ceiling);
- ``mel_l1``: mean |mel(output) - ground-truth mel| (synthesizer mel scale), how far the audio's
  spectrum is from the one asked for (the recordings' own is 0 up to the analysis);
- ``similarity``: mean cosine between the pretrained speaker encoder's embeddings of the output and
  of the recording (the recordings' own is 1): how much of the voice survives vocoding. WER and
  mel distance follow the spectral envelope; this also hears the excitation (a noise-excited
  signal with the right envelope is understood, but does not sound like the speaker).

With ``postfilter=True`` each vocoder output is also passed through the mel-envelope post-filter
(:func:`rtclone.postfilter.postfilter_audio`, against the mel it was made from) and reported as
``vocoder_pf_gt`` / ``vocoder_pf_gta``: the same samples, so the rows differ by the filter alone.
The filter imposes the mel's band levels on whatever it is given, so for a WaveRNN the report adds
a control, ``control_pf_gt`` / ``control_pf_gta``: an *untrained* WaveRNN of the same dims (seeded
with ``seed``) through the same filter. Only the margin of ``vocoder_pf_*`` over ``control_pf_*`` is
the trained network's (measured: a random 256-wide WaveRNN through the filter reaches WER 0.05 /
0.15 and similarity 0.89 / 0.83 on the default eval's true / GTA mels).

An LPC WaveRNN (``dims.lpc_order > 0``, :mod:`rtclone.lpc`) runs its samples through the mel's own
all-pole filter, which likewise gives any excitation the mel's envelope: its report adds
``control_gt`` / ``control_gta``, the untrained twin of the same dims through the same filter.

A training run is worth shipping when its WaveRNN rows reach the Griffin-Lim ones; the same seed
picks the same items, so checkpoints compare fairly.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import audio
from .asr import Transcriber, WerCount, word_error_rate
from .errors import InputShapeError, OptionsError


@dataclass(frozen=True)
class VocoderEvalOptions:
    items: int = 12  # items picked from the prepared set (seeded)
    seed: int = 0  # item choice and the vocoders' sampling seed
    batched: bool = True  # folded generation (RTVC's inference; ~6x fewer sequential steps than streaming)
    postfilter: bool = False  # also report the outputs through the mel-envelope post-filter

    def __post_init__(self) -> None:
        if not isinstance(self.items, int) or isinstance(self.items, bool) or self.items < 1:
            raise OptionsError(f"items must be a positive integer, got {self.items!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise OptionsError(f"seed must be a non-negative integer, got {self.seed!r}")
        for name in ("batched", "postfilter"):
            if not isinstance(getattr(self, name), bool):
                raise OptionsError(f"{name} must be a bool, got {getattr(self, name)!r}")


def _items(prepared: Path, gta: Path | None, options: VocoderEvalOptions) -> tuple[list[dict], dict[str, Path]]:
    try:
        items = json.loads((prepared / "metadata.json").read_text(encoding="utf-8"))["items"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputShapeError(f"{prepared}: not a prepared set (metadata.json with items): {exc}") from exc
    gta_mels: dict[str, Path] = {}
    if gta is not None:
        from .train.synthesizer import read_gta_export

        rows = read_gta_export(gta)
        if rows is None:
            raise InputShapeError(f"{gta}: not an `rtclone train gta` export (no rtclone-gta metadata.json)")
        gta_mels = {r["id"]: r["mel"] for r in rows}
        items = [it for it in items if it["id"] in gta_mels]
    if not items:
        raise InputShapeError(f"{prepared}: no items to evaluate" + (" that the GTA export has" if gta else ""))
    rng = np.random.default_rng(options.seed)
    pick = sorted(rng.choice(len(items), size=min(options.items, len(items)), replace=False))
    return [items[i] for i in pick], gta_mels


def _control(vocoder: Any, options: VocoderEvalOptions) -> Any:
    """An untrained WaveRNN with ``vocoder.dims``, seeded with ``options.seed`` (None for other vocoders)."""
    import torch

    from .vocoder import VocoderDims, WaveRNN

    dims = getattr(vocoder, "dims", None)
    if not isinstance(dims, VocoderDims):
        return None
    with torch.random.fork_rng():
        torch.manual_seed(options.seed)
        return WaveRNN(dims).eval()


def _embed(encoder: Any, wav: np.ndarray) -> np.ndarray | None:
    """The encoder's utterance embedding of ``wav`` (16 kHz), or None when it holds no speech."""
    from .encoder import embed_utterance
    from .errors import AudioError

    try:
        return embed_utterance(encoder, audio.preprocess_wav(wav, audio.SAMPLE_RATE))
    except AudioError:  # silence or too short after voice-activity trimming: no voice to compare
        return None


def _mel_l1(wav: np.ndarray, mel: np.ndarray) -> float:
    got = audio.synth_mel(wav)
    n = min(got.shape[1], mel.shape[1])
    return float(np.mean(np.abs(got[:, :n] - mel[:, :n])))


def evaluate_vocoder(vocoder: Any, prepared: str | Path, gta: str | Path | None = None,
                     options: VocoderEvalOptions = VocoderEvalOptions(), *, baseline: Any = None,
                     transcriber: Transcriber | None = None, encoder: Any = None) -> dict[str, Any]:  # fmt: skip
    """WER and mel distance of ``vocoder`` (anything with ``generate(mel, seed=...)``, e.g. a WaveRNN)
    and of ``baseline`` (default: Griffin-Lim on whole mels) on ground-truth (and GTA) mels.
    ``encoder``: the speaker encoder for ``similarity`` (default: the pretrained one).

    Returns ``{"options", "items": [per item: id, text, words, errors per source], "summary":
    {source: {"wer", "errors", "words", "mel_l1", "similarity"}}, "seconds"}``; sources: ``recording``,
    ``baseline_gt``, ``vocoder_gt`` and, with ``gta``, ``baseline_gta``, ``vocoder_gta`` (and with
    ``options.postfilter`` ``vocoder_pf_*`` and, when ``vocoder.dims`` is a ``VocoderDims``, the
    untrained control ``control_pf_*``; for an LPC vocoder its untrained twin ``control_*``).
    """
    from .postfilter import postfilter_audio
    from .vocoder_gen import GriffinLimVocoder

    prepared = Path(prepared)
    picked, gta_mels = _items(prepared, Path(gta) if gta is not None else None, options)
    # plain inversion (no formant enhancement: that post-filter is for predicted mels, and earlier reports had none)
    baseline = baseline if baseline is not None else GriffinLimVocoder(segments=None, formants=0.0)
    asr = transcriber or Transcriber()
    if encoder is None:
        from .checkpoints import load_encoder

        encoder = load_encoder(None)
    control = _control(vocoder, options) if options.postfilter else None
    # an LPC vocoder's filter imposes the mel's envelope on any excitation: its untrained twin is the control
    lpc_control = _control(vocoder, options) if getattr(getattr(vocoder, "dims", None), "lpc_order", 0) else None
    t0 = time.perf_counter()
    totals: dict[str, WerCount] = {}
    dist: dict[str, list[float]] = {}
    sims: dict[str, list[float]] = {}
    rows = []
    for it in picked:
        gt = np.load(prepared / "mels" / f"{it['id']}.npy", allow_pickle=False)
        outs = {"recording": np.load(prepared / "audio" / f"{it['id']}.npy", allow_pickle=False)}
        mels = {"gt": gt, **({"gta": np.load(gta_mels[it["id"]], allow_pickle=False)} if gta_mels else {})}
        for src, mel in mels.items():
            outs[f"baseline_{src}"] = baseline.generate(mel, seed=options.seed)
            outs[f"vocoder_{src}"] = vocoder.generate(mel, seed=options.seed, batched=options.batched)
            if lpc_control is not None:
                outs[f"control_{src}"] = lpc_control.generate(mel, seed=options.seed, batched=options.batched)
            if options.postfilter:
                outs[f"vocoder_pf_{src}"] = postfilter_audio(outs[f"vocoder_{src}"], mel)
                if control is not None:
                    outs[f"control_pf_{src}"] = postfilter_audio(control.generate(mel, seed=options.seed, batched=options.batched), mel)
        row: dict[str, Any] = {"id": it["id"], "text": it["text"]}
        voice = _embed(encoder, outs["recording"])
        for name, wav in outs.items():
            count = word_error_rate(it["text"], asr.transcribe(wav))
            totals[name] = totals.get(name, WerCount(0, 0)) + count
            dist.setdefault(name, []).append(_mel_l1(wav, gt))
            emb = _embed(encoder, wav)
            sims.setdefault(name, []).append(0.0 if emb is None or voice is None else float(np.dot(emb, voice)))
            row["words"], row[name] = count.words, count.errors
        rows.append(row)
    summary = {name: {"wer": c.wer, "errors": c.errors, "words": c.words, "mel_l1": float(np.mean(dist[name])),
                      "similarity": float(np.mean(sims[name]))} for name, c in totals.items()}  # fmt: skip
    return {"options": {"items": len(picked), "seed": options.seed, "batched": options.batched, "gta": gta is not None,
                        "postfilter": options.postfilter},
            "items": rows,
            "summary": summary, "seconds": round(time.perf_counter() - t0, 1)}


def format_vocoder_table(report: dict[str, Any]) -> str:
    """The summary as a text table (one line per source)."""
    lines = [f"{'source':<17}{'WER':>7}{'errors':>9}{'mel L1':>9}{'similarity':>12}"]
    for name, s in report["summary"].items():
        lines.append(f"{name:<17}{s['wer']:>7.3f}{s['errors']:>5}/{s['words']:<4}{s['mel_l1']:>8.3f}{s['similarity']:>12.3f}")
    return "\n".join(lines)
