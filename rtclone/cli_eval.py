"""The ``rtclone eval`` handlers: encoder EER, cloning quality (sharded over processes), vocoder, report
statistics. Split from :mod:`rtclone.cli` (the parser stays there); the names are a contract (DESIGN.md)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

from .cli_train import _load_encoder, _progress
from .errors import OptionsError


def cmd_eval_encoder(args: argparse.Namespace) -> dict[str, Any]:
    from .eval import eval_encoder

    model = _load_encoder(args.encoder)
    return eval_encoder(model, Path(args.data), umap_png=args.umap, max_utterances_per_speaker=args.max_utterances, progress=_progress(args))


def eval_transcriber(args: argparse.Namespace) -> Any:
    """The eval commands' pocketsphinx transcriber, with the ``--asr-cache`` file when given."""
    from .asr import Transcriber

    return Transcriber(cache=args.asr_cache or None)


def cmd_eval_vocoder(args: argparse.Namespace) -> dict[str, Any]:
    import functools
    from types import SimpleNamespace

    from .checkpoints import load_model
    from .eval_vocoder import VocoderEvalOptions, evaluate_vocoder, format_vocoder_table
    from .vocoder_gen import BACKENDS

    if args.backend not in BACKENDS:
        raise OptionsError(f"--backend must be one of {BACKENDS}, got {args.backend!r}")
    model = load_model(args.checkpoint, "vocoder").eval()
    on_backend = SimpleNamespace(generate=functools.partial(model.generate, backend=args.backend), dims=model.dims)
    report = evaluate_vocoder(on_backend, Path(args.prepared), Path(args.gta) if args.gta else None,
                              VocoderEvalOptions(items=args.items, seed=args.seed, postfilter=args.postfilter,
                                                 batched=not args.unbatched),
                              transcriber=eval_transcriber(args))
    report["checkpoint"] = {"path": args.checkpoint, "step": int(model.step.item()), "backend": args.backend}
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(report, indent=1), encoding="utf-8")
    table = format_vocoder_table(report)
    return {"message": table + (f"\nwrote {args.output}" if args.output else ""), "message_only": True, **report}


def _index_list(text: str) -> list[int]:
    """'12-19' or '0,3,5' (or both, comma-separated) → sorted indices."""
    out: set[int] = set()
    try:
        for part in text.split(","):
            lo, _, hi = part.partition("-")
            out.update(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise OptionsError(f"sentence indices look like 12-19 or 0,3,5, got {text!r}") from None
    return sorted(out)


def cmd_eval_stats(args: argparse.Namespace) -> dict[str, Any]:
    from .eval_stats import compare_reports, format_stats, ratio_interval

    if len(args.reports) > 2:
        raise OptionsError("give one report (its intervals) or two (A then B: the change)")
    reports = []
    for path in args.reports:
        try:
            reports.append(json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            raise OptionsError(f"cannot read the eval report {path}: {exc}") from exc
        if not isinstance(reports[-1], dict) or "voices" not in reports[-1]:
            raise OptionsError(f"{path} is not an `rtclone eval clone` report")
    groups = args.group or [g for g in ("seen", "heldout") if all(g in r.get("summary", {}) for r in reports)]
    sentences = _index_list(args.sentences) if args.sentences else None
    kw = dict(resamples=args.resamples, seed=args.seed)
    if args.resamples < 100:
        raise OptionsError("--resamples must be at least 100")
    rows = []
    for g in groups:
        if len(reports) == 2:
            rows.append(compare_reports(reports[0], reports[1], g, sentences=sentences, **kw))
        else:
            if sentences is not None:
                raise OptionsError("--sentences applies to a comparison of two reports")
            rows.append(ratio_interval(reports[0], g, **kw))
    out = {"reports": args.reports, "rows": rows}
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(out, indent=1), encoding="utf-8")
    return {"message": format_stats(rows) + (f"\nwrote {args.output}" if args.output else ""), "message_only": True, **out}


def _add_asr_cache_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--asr-cache", metavar="FILE",
                   help="reuse and extend this file of pocketsphinx transcripts (keyed by the exact audio): "
                        "a rerun on the same recordings skips decoding them again")


def _eval_clone_part(args: argparse.Namespace, shard: tuple[int, int] = (0, 1)) -> dict[str, Any]:
    """One process's share of ``rtclone eval clone`` (all of it when shard is (0, 1)), goals not yet checked."""
    from .cli import _make_cloner
    from .eval_clone import CloneEvalOptions, evaluate_cloning
    from .mel_inverter import fingerprint
    from .vocoder_gen import GriffinLimVocoder

    opts = CloneEvalOptions(seen_voices=args.seen, heldout_voices=args.heldout, sentences=args.sentences,
                            ref_seconds=args.ref_seconds, seed=args.seed, copy_synthesis=not args.no_copy_synthesis,
                            teacher_forced=args.teacher_forced)  # fmt: skip
    cloner = _make_cloner(args)
    if (args.griffin_lim_power is not None or args.griffin_lim_formants is not None or args.griffin_lim_whole
            or args.griffin_lim_inverter is not None):  # fmt: skip
        if not isinstance(cloner.vocoder, GriffinLimVocoder):
            raise OptionsError("--griffin-lim-* options apply to the Griffin-Lim vocoder only; these models ship a trained vocoder")
        power = cloner.vocoder.power if args.griffin_lim_power is None else args.griffin_lim_power
        formants = cloner.vocoder.formants if args.griffin_lim_formants is None else args.griffin_lim_formants
        segments = None if args.griffin_lim_whole else cloner.vocoder.segments
        inverter = None if args.griffin_lim_inverter == "off" else cloner.vocoder.inverter
        if args.griffin_lim_inverter == "on" and inverter is None:
            raise OptionsError("--griffin-lim-inverter on: these models ship no inverter.pt")
        cloner.vocoder = GriffinLimVocoder(n_iter=cloner.vocoder.n_iter, power=power, segments=segments, formants=formants,
                                           inverter=inverter)  # fmt: skip
    if args.speaker_contrast is not None:
        cloner.speaker_contrast = args.speaker_contrast  # validated here (range, a known mean), not per clone
    log = None if args.json else (lambda line: print(line, file=sys.stderr, flush=True))
    transcriber = eval_transcriber(args)
    report = evaluate_cloning(cloner, Path(args.corpus), opts, log=log, transcriber=transcriber, shard=shard,
                              save_audio=getattr(args, "save_audio", None))
    report["models"] = args.models or args.synthesizer or "default"
    report["postfilter"] = cloner.postfilter
    report["decoder_int8"] = cloner.decoder_int8
    report["speaker_contrast"] = cloner.speaker_contrast
    if isinstance(cloner.vocoder, GriffinLimVocoder):
        report["griffin_lim_power"] = cloner.vocoder.power
        report["griffin_lim_formants"] = cloner.vocoder.formants
        inv = cloner.vocoder.inverter  # an exported one is named by its graph's hash
        report["griffin_lim_inverter"] = None if inv is None else getattr(inv, "artifact_sha256", None) or fingerprint(inv)
        report["griffin_lim_segments"] = None if cloner.vocoder.segments is None else dataclasses.asdict(cloner.vocoder.segments)
    if args.asr_cache:
        report["asr_cache"] = {"path": args.asr_cache, "hits": transcriber.cache_hits}
    return report


def _eval_clone_worker(args: argparse.Namespace, k: int, n: int) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)  # n processes share the cores
    return _eval_clone_part(args, (k, n))


def cmd_eval_clone(args: argparse.Namespace) -> dict[str, Any]:
    import concurrent.futures
    import multiprocessing

    from .eval_clone import check_goals, format_table, merge_reports

    if args.jobs < 1:
        raise OptionsError(f"--jobs must be at least 1, got {args.jobs}")
    if args.jobs == 1:
        report = _eval_clone_part(args)
    else:  # voices dealt round-robin to fresh processes (spawned: no forked torch state), merged in order
        n = args.jobs
        t0 = time.perf_counter()
        with concurrent.futures.ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn")) as pool:
            parts = list(pool.map(_eval_clone_worker, [args] * n, range(n), [n] * n))
        extra = {key: parts[0][key] for key in ("models", "postfilter", "decoder_int8", "speaker_contrast", "griffin_lim_power", "griffin_lim_formants", "griffin_lim_inverter", "griffin_lim_segments") if key in parts[0]}
        report = {**merge_reports(parts), **extra, "jobs": n, "seconds": round(time.perf_counter() - t0, 1)}
        if args.asr_cache:
            report["asr_cache"] = {"path": args.asr_cache, "hits": sum(p["asr_cache"]["hits"] for p in parts)}
    report["goals"] = check_goals(report)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(report, indent=1), encoding="utf-8")
    return {"message": format_table(report) + (f"\nwrote {args.output}" if args.output else ""), "message_only": True, **report}
