"""The ``rtclone`` commands that build data and train models: ``corpus build``, ``train *``,
``eval encoder``, ``eval vocoder``, ``eval stats`` and the training commands' shared options (split out of :mod:`rtclone.cli`, which builds the parser and wires them)."""

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


def cmd_corpus_test_set(args: argparse.Namespace) -> dict[str, Any]:
    from .corpus import build_test_set, corpus_summary, parse_sentences

    sentences = None
    if args.sentences:
        try:
            sentences = parse_sentences(Path(args.sentences).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise OptionsError(f"cannot read the sentence file {args.sentences}: {exc}") from exc
    manifest = build_test_set(Path(args.source), Path(args.root), voices=tuple(args.voice or ()), sentences=sentences,
                              jobs=args.jobs, progress=_progress(args))  # fmt: skip
    return {"message": f"test set in {args.root}", "root": args.root, **corpus_summary(manifest)}


def cmd_train_encoder(args: argparse.Namespace) -> dict[str, Any]:
    from .train.encoder import train_encoder

    from .encoder import EncoderDims

    dims = EncoderDims(hidden=args.hidden, n_layers=args.layers, embed=args.embed)
    path = train_encoder(Path(args.data), Path(args.out), steps=args.steps, seed=args.seed, progress=_progress(args),
                         speakers_per_batch=args.speakers_per_batch, utterances_per_speaker=args.utterances_per_speaker,
                         dims=dims, lr=args.lr, checkpoint_every=args.checkpoint_every, resume=not args.no_resume)  # fmt: skip
    return {"message": f"checkpoint: {path}", "checkpoint": str(path)}


def add_train_vocoder_args(p: argparse.ArgumentParser) -> None:
    """The options of ``rtclone train vocoder`` (shared with ``python -m rtclone.train.vocoder``)."""
    p.add_argument("wavs", help="folder of wav/flac files, a built corpus (its training split) or an `rtclone train gta` export")
    p.add_argument("out", help="run directory (checkpoints; resumes if present)")
    p.add_argument("--mels", help="folder of GTA mel .npy files matching the wavs (default: ground-truth mels)")
    p.add_argument("--val", help="held-out data, as for WAVS: its loss (val_loss) is logged at every checkpoint")
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--batch-size", type=int, default=16, help="segments per process")
    p.add_argument("--checkpoint-every", type=int, default=1000)
    p.add_argument("--prune-target", type=float, default=0.0, help="final block sparsity (0 = no pruning)")
    p.add_argument("--prune-start", type=int, default=0)
    p.add_argument("--prune-end", type=int, default=50_000)
    p.add_argument("--prune-every", type=int, default=500)
    p.add_argument("--prune-block", default="16x1")
    p.add_argument("--rnn-dims", type=int, default=512, help="GRU width (RTVC: 512; a new run only, a resumed run keeps its dims)")
    p.add_argument("--fc-dims", type=int, default=512, help="FC width (RTVC: 512)")
    p.add_argument("--lpc-order", type=int, default=0,
                   help="> 0: learn the excitation of the mel's linear predictor of this order (rtclone.lpc; a new run only)")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast for the passes (faster on CPUs with AVX512-BF16)")
    p.add_argument("--seed", type=int, default=0)


def add_train_synthesizer_args(p: argparse.ArgumentParser) -> None:
    """The training options of ``rtclone train synthesizer`` (shared with ``python -m rtclone.train.synthesizer``)."""
    p.add_argument("--val", help="a prepared held-out set (`--split eval`): its loss is logged at every checkpoint")
    p.add_argument("--dims", choices=("small", "rtvc", "tiny"), default="small")
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--r-schedule", default="0:2", help="STEP:R pairs, e.g. 0:7,2000:4,4000:2")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--guided-attention", type=float, default=0.0)
    p.add_argument("--own-frames", type=float, default=0.0,
                   help="scheduled sampling: probability of feeding the decoder its own previous frame")
    p.add_argument("--own-parallel", action="store_true",
                   help="scheduled sampling's own frames come from a first teacher-forced pass (parallel)")
    p.add_argument("--own-ramp", help="START:END: --own-frames rises linearly from 0 at step START to its value at END")
    p.add_argument("--bf16-lstm", action="store_true",
                   help="bfloat16 product operands in the decoder's residual LSTMs (float32 accumulation)")
    p.add_argument("--zoneout", type=float, default=0.0, help="zoneout probability of the decoder's residual LSTMs (RTVC: 0.1)")
    p.add_argument("--lr-decay", help="START:END: Adam's rate falls geometrically from --lr at step START to --lr-final at END")
    p.add_argument("--lr-final", type=float, help="the rate --lr-decay ends at (and keeps)")
    p.add_argument("--speaker-loss", type=float, default=0.0,
                   help="weight of the speaker-consistency loss (the pretrained encoder's cosine distance between the "
                        "predicted and the recorded mel; 0 = off)")
    p.add_argument("--speaker-free-run", type=int, default=0, metavar="FRAMES",
                   help="the speaker loss judges the first FRAMES frames decoded free-running (as at inference) "
                        "instead of a window of the teacher-forced mel (0)")
    p.add_argument("--checkpoint-every", type=int, default=1000)
    p.add_argument("--no-resume", action="store_true")
    p.add_argument("--seed", type=int, default=0)


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
        dims = VocoderDims(rnn_dims=args.rnn_dims, fc_dims=args.fc_dims, lpc_order=args.lpc_order)
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
                own_parallel=args.own_parallel, own_ramp=parse_ramp(args.own_ramp), lr_decay=parse_ramp(args.lr_decay),
                lr_final=args.lr_final, speaker_loss=args.speaker_loss,
                speaker_free_run=args.speaker_free_run)  # fmt: skip


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


def cmd_train_inverter(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np

    from .mel_inverter import InverterDims
    from .train.inverter import corpus_paths, prepare_gta_pairs, prepare_pairs, train_inverter

    out, corpus = Path(args.out), Path(args.corpus)
    sets = {}
    for split in ("train", "eval"):  # the frame pairs are cached beside the run
        cache = out / (f"pairs-{split}.npz" if split == "eval" or not args.gta else "pairs-gta.npz")
        if cache.is_file():
            with np.load(cache) as f:
                sets[split] = {k: f[k] for k in f.files}
        elif split == "train" and args.gta:
            sets[split] = prepare_gta_pairs(Path(args.gta), cache, jobs=args.jobs)
        else:
            sets[split] = prepare_pairs(corpus_paths(corpus, split), cache, jobs=args.jobs)
    if args.init and not (out / "inverter.pt").is_file():  # start from another inverter's weights (fresh optimizer)
        from .checkpoints import load_model, save_model

        save_model(load_model(args.init, "inverter"), out / "inverter.pt", "inverter", meta={"init": str(args.init)})
    dims = InverterDims(hidden=args.hidden, layers=args.layers, context=args.context)
    log = None if args.json else (lambda row: print(row, file=sys.stderr, flush=True))
    path = train_inverter(sets["train"], out, val=sets["eval"], steps=args.steps, batch=args.batch, frames=args.frames,
                          lr=args.lr, dims=dims, seed=args.seed, checkpoint_every=args.checkpoint_every, sc=args.sc,
                          log=log)  # fmt: skip
    return {"message": f"checkpoint: {path}", "checkpoint": str(path)}
