"""The ``rtclone`` commands that build data and train models: ``corpus build``, ``train *``,
``eval encoder`` (split out of :mod:`rtclone.cli`, which builds the parser and wires them)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .errors import OptionsError


def _progress(args: argparse.Namespace) -> bool:
    return not getattr(args, "json", False) and sys.stderr.isatty()


def _load_encoder(path: str | None):
    from .checkpoints import load_encoder

    return load_encoder(path)


def cmd_corpus_build(args: argparse.Namespace) -> dict[str, Any]:
    from .corpus import CorpusOptions, build_corpus, corpus_summary, plan_corpus

    opts = CorpusOptions(seed=args.seed, n_voices=args.voices, voices=tuple(args.voice or ()), utterances_per_voice=args.utterances,
                         extra_per_voice=args.extra, extra2_per_voice=args.extra2, extra3_per_voice=args.extra3, heldout_voices=args.heldout_voices, heldout_sentences=args.heldout_sentences, jobs=args.jobs)  # fmt: skip
    manifest = plan_corpus(opts) if args.dry_run else build_corpus(Path(args.root), opts, progress=_progress(args))
    return {"message": f"corpus {'plan' if args.dry_run else 'in ' + args.root}", "root": args.root, **corpus_summary(manifest)}


def cmd_train_encoder(args: argparse.Namespace) -> dict[str, Any]:
    from .train.encoder import train_encoder

    from .encoder import EncoderDims

    dims = EncoderDims(hidden=args.hidden, n_layers=args.layers, embed=args.embed)
    path = train_encoder(Path(args.data), Path(args.out), steps=args.steps, seed=args.seed, progress=_progress(args),
                         speakers_per_batch=args.speakers_per_batch, utterances_per_speaker=args.utterances_per_speaker,
                         dims=dims, lr=args.lr, checkpoint_every=args.checkpoint_every, resume=not args.no_resume)  # fmt: skip
    return {"message": f"checkpoint: {path}", "checkpoint": str(path)}


def vocoder_run_options(args: argparse.Namespace) -> dict[str, Any]:
    """``train_vocoder`` keyword arguments from ``rtclone train vocoder``'s options."""
    from .sparse import PruneSchedule
    from .train.vocoder import vocoder_pairs
    from .vocoder import VocoderDims

    prune = None
    if args.prune_target:
        try:
            block = tuple(int(x) for x in args.prune_block.lower().split("x"))
        except ValueError as exc:
            raise OptionsError(f"--prune-block must look like 16x1, got {args.prune_block!r}") from exc
        prune = PruneSchedule(target=args.prune_target, start=args.prune_start, end=args.prune_end, every=args.prune_every, block=block)
    dims = None
    if not (Path(args.out) / "vocoder.pt").is_file():
        dims = VocoderDims(rnn_dims=args.rnn_dims, fc_dims=args.fc_dims)
    return dict(data=vocoder_pairs(Path(args.wavs), Path(args.mels) if args.mels else None), out_dir=Path(args.out),
                dims=dims, lr=args.lr, steps=args.steps, batch_size=args.batch_size, seed=args.seed, prune=prune,
                checkpoint_every=args.checkpoint_every, progress=_progress(args), bf16=args.bf16,
                val=vocoder_pairs(Path(args.val)) if args.val else None)


def cmd_train_vocoder(args: argparse.Namespace) -> dict[str, Any]:
    from .train.vocoder import train_vocoder

    report = train_vocoder(**vocoder_run_options(args))
    return {"message": f"vocoder run in {args.out}", **report}


def synthesizer_run_options(args: argparse.Namespace, prepared: Path | str, progress: bool) -> dict[str, Any]:
    """``train_synthesizer`` keyword arguments from the training options of ``rtclone train synthesizer``."""
    from .synthesizer import SynthesizerDims
    from .train.synthesizer import parse_r_schedule, parse_ramp

    dims = {"small": SynthesizerDims.small, "rtvc": SynthesizerDims, "tiny": SynthesizerDims.tiny}[args.dims]()
    return dict(prepared_dir=Path(prepared), out_dir=Path(args.out), dims=dims, steps=args.steps, batch_size=args.batch_size,
                r_schedule=parse_r_schedule(args.r_schedule), lr=args.lr, guided_attention=args.guided_attention,
                seed=args.seed, resume=not args.no_resume, progress=progress, checkpoint_every=args.checkpoint_every,
                val_dir=args.val, own_frames=args.own_frames, bf16_lstm=args.bf16_lstm, zoneout=args.zoneout,
                own_parallel=args.own_parallel, own_ramp=parse_ramp(args.own_ramp))  # fmt: skip


def cmd_train_synthesizer(args: argparse.Namespace) -> dict[str, Any]:
    from .train import synthesizer as ts

    prepared = Path(args.data)
    if not (prepared / "metadata.json").is_file():  # raw (audio, transcript, speaker) folders: prepare first
        from .checkpoints import load_encoder

        prepared = Path(args.prepared) if args.prepared else Path(args.out) / "prepared"
        # up to date: returns at once; a grown corpus: only the new utterances are prepared
        summary = ts.prepare_synthesizer_data(Path(args.data), prepared, load_encoder(args.encoder) if args.encoder else None,
                                              progress=_progress(args), split=args.split, jobs=args.jobs)
        if args.prepare_only:
            return {"message": f"prepared data in {prepared}", **summary}
    elif args.split != "train":
        raise OptionsError("--split applies to raw corpora; DATA is already prepared")
    elif args.prepare_only:
        return {"message": f"{prepared} is already prepared", "out": str(prepared)}
    report = ts.train_synthesizer(**synthesizer_run_options(args, prepared, progress=_progress(args)))
    report.pop("losses", None)
    return {"message": f"synthesizer run in {args.out}", **report}


def cmd_train_gta(args: argparse.Namespace) -> dict[str, Any]:
    from .train.synthesizer import export_gta

    return export_gta(args.checkpoint, Path(args.prepared), Path(args.out), progress=_progress(args))


def cmd_eval_encoder(args: argparse.Namespace) -> dict[str, Any]:
    from .eval import eval_encoder

    model = _load_encoder(args.encoder)
    return eval_encoder(model, Path(args.data), umap_png=args.umap, max_utterances_per_speaker=args.max_utterances, progress=_progress(args))


def cmd_eval_vocoder(args: argparse.Namespace) -> dict[str, Any]:
    import functools
    import json
    from types import SimpleNamespace

    from .checkpoints import load_model
    from .eval_vocoder import VocoderEvalOptions, evaluate_vocoder, format_vocoder_table
    from .vocoder_gen import BACKENDS

    if args.backend not in BACKENDS:
        raise OptionsError(f"--backend must be one of {BACKENDS}, got {args.backend!r}")
    model = load_model(args.checkpoint, "vocoder").eval()
    on_backend = SimpleNamespace(generate=functools.partial(model.generate, backend=args.backend), dims=model.dims)
    report = evaluate_vocoder(on_backend, Path(args.prepared), Path(args.gta) if args.gta else None,
                              VocoderEvalOptions(items=args.items, seed=args.seed, postfilter=args.postfilter))
    report["checkpoint"] = {"path": args.checkpoint, "step": int(model.step.item()), "backend": args.backend}
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(report, indent=1), encoding="utf-8")
    table = format_vocoder_table(report)
    return {"message": table + (f"\nwrote {args.output}" if args.output else ""), "message_only": True, **report}
