"""Copy trained checkpoints into the package's default-model folder and write its card.

    python scripts/ship_models.py --synthesizer runs/synth-small/synthesizer.pt \
        [--vocoder runs/voc-small/vocoder.pt [--postfilter]] [--eval benchmarks/results/eval_clone.json] [--note "..."]

Writes ``rtclone/models/{synthesizer,vocoder}.pt`` (weights and dims only: the rtclone checkpoint
format, no optimizer state) and ``rtclone/models/card.json`` (what each model is: dims, parameter
count, training steps, sparsity, data; and the measured quality from an ``rtclone eval clone``
report). Without ``--vocoder`` any shipped vocoder is removed and the default is Griffin-Lim.
``--postfilter`` writes ``"postfilter": true`` into the vocoder's entry: ``Cloner.from_default``
then runs the WaveRNN's output through the mel-envelope post-filter (``rtclone.postfilter``);
ship it only with an ``--eval`` report measured that way (``rtclone eval clone … --postfilter on``).
``--decoder-int8`` writes ``"decoder_int8": true`` into the synthesizer's entry: the cloner then
decodes with int8 weights (``Cloner.decoder_int8``); likewise only with a report measured so
(``--int8-decoder on``).
``--half`` stores the synthesizer's weights in float16 (loaded back into float32 parameters: the
model is the float16-rounded one; evaluate exactly that file, e.g. one written by
``python scripts/ship_models.py --half-only IN OUT``). ``--speaker-mean FILE`` ships the training
voices' mean embedding (``scripts/speaker_mean.py`` on the corpus this synthesizer trained on) as
``speaker_mean.npy`` for ``Cloner.speaker_contrast``; without it any shipped mean is removed (it
belonged to the previous synthesizer). ``--inverter FILE`` ships a learned mel -> linear map for
Griffin-Lim (``rtclone train inverter``; stored as given: halve it first with ``--half-only`` and
evaluate that file) as ``inverter.pt``; without it any shipped inverter is removed. An ``--eval``
report must have run with exactly that inverter, or with none when none ships (its
``griffin_lim_inverter`` fingerprint). Refuses to ship more than 60 MB in all.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "rtclone" / "models"
LIMIT_MB = 60.0


def describe(path: Path, kind: str) -> dict:
    from rtclone.checkpoints import build_model, describe as describe_checkpoint, read_checkpoint
    from rtclone.sparse import measure_sparsity

    info = describe_checkpoint(path)
    if info["kind"] != kind:
        raise SystemExit(f"{path} holds a {info['kind']}, not a {kind}")
    info.update(file=path.name, bytes=path.stat().st_size, sha256=hashlib.sha256(path.read_bytes()).hexdigest())
    del info["path"]  # the file sits next to the card
    if kind == "vocoder":
        info["block_sparsity_16x1"] = measure_sparsity(build_model(read_checkpoint(path, expect_kind=kind)), (16, 1))["total"]
    return info


def halve(src: Path, dst: Path) -> Path:
    """Write ``src`` (an rtclone checkpoint) to ``dst`` with its floating-point weights in float16."""
    import torch

    ckpt = torch.load(src, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model_state"), dict):
        raise SystemExit(f"{src} is not an rtclone checkpoint")
    ckpt["model_state"] = {k: v.half() if v.is_floating_point() else v for k, v in ckpt["model_state"].items()}
    ckpt["meta"] = {**(ckpt.get("meta") or {}), "stored": "float16"}
    torch.save(ckpt, dst)
    return dst


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--synthesizer", type=Path, help="the synthesizer checkpoint to ship (required unless --half-only)")
    ap.add_argument("--half-only", nargs=2, type=Path, metavar=("IN", "OUT"),
                    help="only write IN with float16 weights to OUT (what --half would ship, to evaluate first)")
    ap.add_argument("--vocoder", type=Path)
    ap.add_argument("--inverter", type=Path, help="a mel inverter checkpoint Griffin-Lim runs on (rtclone train inverter)")
    ap.add_argument("--postfilter", action="store_true", help="the shipped WaveRNN runs with the mel-envelope post-filter")
    ap.add_argument("--decoder-int8", action="store_true", help="the shipped synthesizer decodes with int8 weights")
    ap.add_argument("--eval", type=Path, help="an `rtclone eval clone` JSON report of these models")
    ap.add_argument("--data", default="built-in corpus v2 `rtclone corpus build` (seed 0): 36 training voices x (120 core + 150 "
                    "extra sentences), 9 720 utterances; held-out voices and sentences never trained on")
    ap.add_argument("--note", default="")
    ap.add_argument("--half", action="store_true", help="store the synthesizer's weights in float16 (half the bytes)")
    ap.add_argument("--speaker-mean", type=Path, metavar="FILE",
                    help="the training voices' mean embedding (.npy from scripts/speaker_mean.py on this synthesizer's corpus)")
    args = ap.parse_args()
    if args.half_only:
        halve(*args.half_only)
        return 0
    if args.synthesizer is None:
        ap.error("--synthesizer is required")
    if args.postfilter and not args.vocoder:
        print("refusing: --postfilter needs --vocoder (Griffin-Lim has nothing to filter)", file=sys.stderr)
        return 1
    report = json.loads(args.eval.read_text()) if args.eval else None
    if args.postfilter and report is not None and report.get("postfilter") is not True:
        print(f"refusing: {args.eval} was not measured with the post-filter (rtclone eval clone ... --postfilter on)", file=sys.stderr)
        return 1
    if report is not None and bool(report.get("decoder_int8")) != args.decoder_int8:
        print(f"refusing: {args.eval} was measured with decoder_int8 {bool(report.get('decoder_int8'))}, "
              f"not {args.decoder_int8} (rtclone eval clone ... --int8-decoder on|off)", file=sys.stderr)
        return 1
    from rtclone.vocoder_gen import GriffinLimVocoder

    gl = None if args.vocoder else GriffinLimVocoder()  # the engine's Griffin-Lim, when no vocoder ships
    if report is not None and gl is not None and "griffin_lim_formants" in report:
        measured = (report.get("griffin_lim_power"), report["griffin_lim_formants"])
        if measured != (gl.power, gl.formants):
            print(f"refusing: {args.eval} was measured with Griffin-Lim power / formants {measured}, the engine "
                  f"runs {(gl.power, gl.formants)} (rtclone.audio.GRIFFIN_LIM_*)", file=sys.stderr)
            return 1
    inverter_print = None
    if args.inverter is not None:
        from rtclone.checkpoints import load_model
        from rtclone.mel_inverter import fingerprint

        if args.vocoder:
            print("refusing: --inverter is for Griffin-Lim; a trained vocoder ships instead", file=sys.stderr)
            return 1
        inverter_print = fingerprint(load_model(args.inverter, "inverter"))
    if report is not None and gl is not None and report.get("griffin_lim_inverter") != inverter_print:
        print(f"refusing: {args.eval} was measured with Griffin-Lim inverter {report.get('griffin_lim_inverter')}, "
              f"shipping {inverter_print}", file=sys.stderr)
        return 1
    MODELS.mkdir(exist_ok=True)
    mean = None
    if args.speaker_mean is not None:  # checked against the synthesizer before anything is replaced
        from rtclone.errors import CheckpointError
        from rtclone.pipeline import load_speaker_mean

        size = describe(args.synthesizer, "synthesizer")["dims"]["speaker_embedding_size"]
        try:
            mean = load_speaker_mean(args.speaker_mean, size)
        except CheckpointError as exc:
            print(f"refusing: {exc}", file=sys.stderr)
            return 1
    staged = MODELS / "synthesizer.pt.new"
    if args.half:
        halve(args.synthesizer, staged)
    else:
        shutil.copyfile(args.synthesizer, staged)
    total = staged.stat().st_size + sum(f.stat().st_size for f in (args.vocoder, args.inverter) if f is not None)
    if total / 1e6 > LIMIT_MB:
        staged.unlink()
        print(f"refusing: {total / 1e6:.1f} MB > {LIMIT_MB} MB", file=sys.stderr)
        return 1
    staged.replace(MODELS / "synthesizer.pt")
    card = {"format": "rtclone-model-card", "version": 1, "data": args.data, "note": args.note,
            "encoder": "resemblyzer's pretrained GE2E weights (PyPI package resemblyzer, Apache-2.0)",
            "synthesizer": {**describe(MODELS / "synthesizer.pt", "synthesizer"), "decoder_int8": args.decoder_int8}}  # fmt: skip
    if args.vocoder:
        shutil.copyfile(args.vocoder, MODELS / "vocoder.pt")
        card["vocoder"] = {**describe(MODELS / "vocoder.pt", "vocoder"), "postfilter": args.postfilter}
    else:
        (MODELS / "vocoder.pt").unlink(missing_ok=True)
        card["vocoder"] = {"file": None, "kind": "Griffin-Lim" + (" on the learned mel inverter" if args.inverter else "") + " (no trained vocoder shipped)", "n_iter": gl.n_iter,
                           "power": gl.power, "peak": gl.peak, "formants": gl.formants,
                           "segments": None if gl.segments is None else dataclasses.asdict(gl.segments), "inverter": None}  # fmt: skip
        if args.inverter is not None:
            shutil.copyfile(args.inverter, MODELS / "inverter.pt")
            card["vocoder"]["inverter"] = {**describe(MODELS / "inverter.pt", "inverter"), "fingerprint": inverter_print}
    if args.inverter is None:
        (MODELS / "inverter.pt").unlink(missing_ok=True)
    from rtclone.pipeline import SPEAKER_MEAN_FILE

    if mean is not None:
        np.save(MODELS / SPEAKER_MEAN_FILE, mean, allow_pickle=False)
        card["speaker_mean"] = {"file": SPEAKER_MEAN_FILE, "from": str(args.speaker_mean),
                                "sha256": hashlib.sha256((MODELS / SPEAKER_MEAN_FILE).read_bytes()).hexdigest()}  # fmt: skip
    else:
        (MODELS / SPEAKER_MEAN_FILE).unlink(missing_ok=True)  # the previous synthesizer's voices, not this one's
        card["speaker_mean"] = None
    if report is not None:
        card["eval"] = {k: report.get(k) for k in ("options", "summary", "goals", "failures")}
        card["eval"]["failures"] = len(report.get("failures") or [])
    (MODELS / "card.json").write_text(json.dumps(card, indent=1) + "\n", encoding="utf-8")
    print(json.dumps({"shipped_mb": round(total / 1e6, 2), **{k: card[k].get("meta") for k in ("synthesizer", "vocoder") if isinstance(card[k], dict)}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
