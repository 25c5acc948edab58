"""The ``rtclone`` command line (the names are a contract: see DESIGN.md).

Every command takes ``--json``: it then prints one JSON object as its last line instead of prose.
Library errors (:mod:`rtclone.errors`) become a message on stderr and a non-zero exit status;
with ``--json`` the object is ``{"ok": false, "error": {"code": ..., "message": ...}}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

from . import __version__
from .cli_bench import cmd_bench_encoder, cmd_bench_server, cmd_bench_synthesizer, cmd_bench_vocoder
from .cli_eval import _add_asr_cache_arg, cmd_eval_clone, cmd_eval_encoder, cmd_eval_stats, cmd_eval_vocoder
from .cli_train import (_load_encoder, add_train_synthesizer_args, add_train_vocoder_args,  # noqa: F401
                        cmd_corpus_build, cmd_corpus_test_set, cmd_train_encoder, cmd_train_gta, cmd_train_inverter, cmd_train_synthesizer,
                        cmd_train_vocoder)
from .errors import FileSystemError, OptionsError, RtcloneError

Handler = Callable[[argparse.Namespace], dict[str, Any]]


# ---- output ----------------------------------------------------------------------------------
def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, Path):
        return str(v)
    if hasattr(v, "item") and callable(v.item) and getattr(v, "ndim", 1) == 0:
        return v.item()
    if hasattr(v, "tolist"):
        return v.tolist()
    return v


def _emit(result: dict[str, Any], as_json: bool) -> None:
    message_only = result.pop("message_only", False)  # the message already says it all (details in --json)
    if as_json:
        print(json.dumps(_jsonable({"ok": True, **result})))
        return
    message = result.pop("message", None)
    if message:
        print(message)
    if message_only:
        return
    for key, value in result.items():
        if isinstance(value, float):
            value = f"{value:.4g}"
        elif isinstance(value, (dict, list)):
            value = json.dumps(_jsonable(value))
        print(f"{key}: {value}")


# ---- handlers --------------------------------------------------------------------------------
def cmd_info(args: argparse.Namespace) -> dict[str, Any]:
    from .checkpoints import describe

    return describe(args.checkpoint)


def cmd_embed(args: argparse.Namespace) -> dict[str, Any]:
    from .audio import preprocess_wav
    from .encoder import embed_file, embed_speaker
    from .voicefile import save_embedding

    model = _load_encoder(args.encoder)
    t0 = time.perf_counter()  # several recordings: one speaker embedding (the mean of theirs, as SV2TTS)
    emb = embed_file(model, args.ref[0]) if len(args.ref) == 1 else embed_speaker(model, [preprocess_wav(Path(r)) for r in args.ref])
    elapsed = time.perf_counter() - t0
    out = Path(args.output) if args.output else Path(args.ref[0]).with_suffix(".voice")
    save_embedding(out, emb, {"source": ", ".join(Path(r).name for r in args.ref), "encoder": args.encoder or "resemblyzer"})
    return {"message": f"wrote {out}", "output": str(out), "dim": int(emb.shape[0]), "seconds": elapsed,
            "embedding": emb.tolist() if args.json else None}


def cmd_verify(args: argparse.Namespace) -> dict[str, Any]:
    from .encoder import DEFAULT_VERIFY_THRESHOLD, embed_file, speaker_similarity
    from .voicefile import EMBEDDING_DIM, read_voice, unit_embedding

    model = _load_encoder(args.encoder)
    stored = {p: read_voice(p) for p in (args.a, args.b)}  # a voice file (`rtclone embed`) is compared as stored
    a, b = (embed_file(model, p) if stored[p] is None else unit_embedding(stored[p], EMBEDDING_DIM, p) for p in (args.a, args.b))
    threshold = DEFAULT_VERIFY_THRESHOLD if args.threshold is None else args.threshold
    cos = float(speaker_similarity(a, b))
    same = cos >= threshold
    return {"message": f"{'same' if same else 'different'} speaker (cosine {cos:.3f}, threshold {threshold:.3f})",
            "cosine": cos, "threshold": threshold, "same": same}


def _make_cloner(args: argparse.Namespace):
    from .pipeline import Cloner

    int8 = getattr(args, "int8_decoder", None)
    int8 = None if int8 is None else int8 == "on"
    if args.models:
        cloner = Cloner.from_dir(args.models, int8)
    elif args.synthesizer:
        cloner = Cloner.from_paths(args.encoder, args.synthesizer, args.vocoder)
        if int8 is not None:
            cloner.decoder_int8 = int8
    else:
        cloner = Cloner.from_default(int8)
    choice = getattr(args, "postfilter", None)
    if choice is not None:
        if choice == "on" and not cloner.has_trained_vocoder:
            raise OptionsError("--postfilter on applies to a trained vocoder (WaveRNN); these models use Griffin-Lim")
        cloner.postfilter = choice == "on"
    return cloner


def _add_postfilter_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--postfilter", choices=("on", "off"),
                   help="mel-envelope post-filter of a WaveRNN's output (default: as the model folder's card.json says, else off)")
    p.add_argument("--int8-decoder", choices=("on", "off"),
                   help="the synthesizer's decoder with int8 weights (faster on a CPU; default: as the model folder's card.json says, else off)")


def cmd_clone(args: argparse.Namespace) -> dict[str, Any]:
    """Streams: each chunk goes to the wav file (and the player) as it is made, so a text of any length
    (a whole file on stdin, up to 10⁶ characters) runs in little memory; a failure leaves no partial file."""
    from .wavfile import WavWriter
    from .pipeline import SynthesisOptions

    cloner = _make_cloner(args)
    text = args.text if args.text is not None else sys.stdin.read()
    opts = SynthesisOptions(seed=args.seed, backend=args.backend, max_chars=min(max(len(text), SynthesisOptions.max_chars), 10**6))
    player = None
    if args.play:
        from .client import Player

        player = Player()
    t0, ttfa = time.perf_counter(), None
    emb = cloner.voice(args.ref)  # one or several recordings or voice files
    with WavWriter(args.output, cloner.sample_rate) as out:
        for chunk in cloner.stream(text, emb, opts):
            ttfa = time.perf_counter() - t0 if ttfa is None else ttfa
            out.write(chunk)
            if player is not None:
                player.feed(chunk)
    elapsed, audio_s = time.perf_counter() - t0, out.samples / cloner.sample_rate
    if player is not None:
        player.finish()
    return {"message": f"wrote {args.output} ({audio_s:.2f} s)", "output": args.output, "audio_s": audio_s, "ttfa_s": ttfa,
            "rtf": elapsed / audio_s if audio_s else None, "elapsed_s": elapsed, "sample_rate": cloner.sample_rate}


def cmd_export(args: argparse.Namespace) -> dict[str, Any]:
    from .export import export_checkpoints

    manifest = export_checkpoints(args.output, encoder=args.encoder, synthesizer=args.synthesizer, vocoder=args.vocoder,
                                  format=args.format, inverter=args.inverter)  # fmt: skip
    return {"message": f"exported to {args.output}", "output": args.output, "format": args.format,
            "components": sorted(manifest.get("components", {}))}  # fmt: skip


def cmd_demo(args: argparse.Namespace) -> dict[str, Any]:
    """Built-in voices (flite) → embeddings → verification; then cloning when default models are shipped."""
    import shutil
    import subprocess

    from .audio import load_audio, preprocess_wav, save_wav
    from .encoder import DEFAULT_VERIFY_THRESHOLD, embed_utterance, speaker_similarity
    from .errors import BackendUnavailableError, CheckpointError

    if shutil.which("flite") is None:
        raise BackendUnavailableError("the demo makes its reference voices with flite: apt-get install flite")
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    lines = {"slt-a": ("slt", "The birch canoe slid on the smooth planks of the quiet lake."),
             "slt-b": ("slt", "Glue the sheet to the dark blue background before it dries."),
             "rms-a": ("rms", "The birch canoe slid on the smooth planks of the quiet lake.")}  # fmt: skip
    model = _load_encoder(None)
    embs = {}
    for name, (voice, text) in lines.items():
        path = out / f"ref-{name}.wav"
        subprocess.run(["flite", "-voice", voice, "-t", text, "-o", str(path)], check=True, capture_output=True)
        embs[name] = embed_utterance(model, preprocess_wav(load_audio(path)))
    same = speaker_similarity(embs["slt-a"], embs["slt-b"])
    diff = speaker_similarity(embs["slt-a"], embs["rms-a"])
    result: dict[str, Any] = {"same_speaker_cosine": same, "different_speaker_cosine": diff,
                              "threshold": DEFAULT_VERIFY_THRESHOLD, "references": str(out)}  # fmt: skip
    msg = [f"speaker encoder (pretrained GE2E): same voice {same:.3f}, different voices {diff:.3f} (threshold {DEFAULT_VERIFY_THRESHOLD})"]
    try:
        from .pipeline import Cloner

        cloner = Cloner.from_default()
    except CheckpointError as exc:
        msg.append(f"cloning skipped: {exc}")
        result["cloned"] = None
    else:
        r = cloner.clone(args.text, embs["slt-a"])
        save_wav(out / "cloned.wav", r.audio)
        sim = speaker_similarity(embed_utterance(model, preprocess_wav(r.audio, 16000)), embs["slt-a"])
        msg.append(f"cloned voice slt: {out / 'cloned.wav'} ({r.audio_s:.2f} s, TTFA {r.ttfa_s * 1000:.0f} ms, RTF {r.rtf:.2f}); "
                   f"its similarity to the reference {sim:.3f} (same voice at >= {DEFAULT_VERIFY_THRESHOLD})")  # fmt: skip
        result.update(cloned=str(out / "cloned.wav"), ttfa_s=r.ttfa_s, rtf=r.rtf, clone_similarity=sim)
    result["message"] = "\n".join(msg)
    return result


def cmd_prune(args: argparse.Namespace) -> dict[str, Any]:
    from .sparse import prune_checkpoint

    block = tuple(int(x) for x in args.block.lower().split("x"))
    report = prune_checkpoint(args.input, args.output, args.sparsity, block)
    return {"message": f"wrote {args.output}", **report}


def cmd_serve(args: argparse.Namespace) -> dict[str, Any]:
    from .serve.server import serve_main

    status = serve_main(host=args.host, port=args.port, models=args.models, voices_dir=args.voices_dir, token=args.token,
                        max_streams=args.max_streams, max_queue=args.max_queue,
                        batch_vocoder=not args.no_batch_vocoder, threads=args.threads, workers=args.workers,
                        decoder_int8=None if args.int8_decoder is None else args.int8_decoder == "on")  # fmt: skip
    return {"message": "server stopped", "status": status}


def cmd_say(args: argparse.Namespace) -> dict[str, Any]:
    from .client import say_main

    options = json.loads(args.options) if args.options else None
    return say_main(args.server, args.text, voice=args.voice, ref=args.ref, output=args.output, play=args.play,
                    as_json=args.json, token=args.token, options=options)  # fmt: skip


def cmd_mic(args: argparse.Namespace) -> dict[str, Any]:
    from .mic import mic_main

    return mic_main(args.server, text=args.text, source=args.source, name=args.name, min_voiced_s=args.min_voiced,
                    output=args.output, play=not args.no_play, token=args.token, as_json=args.json)  # fmt: skip


# ---- parser ----------------------------------------------------------------------------------
def _add(sub, name: str, handler: Handler, help: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help, description=help)
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.set_defaults(func=handler)
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rtclone", description="Streaming, real-time voice cloning (SV2TTS).")
    parser.add_argument("--version", action="version", version=f"rtclone {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = _add(sub, "embed", cmd_embed, "the 256-d speaker embedding of a reference recording (versioned voice file)")
    p.add_argument("ref", nargs="+", help="reference audio (wav/flac/ogg/mp3, any rate 8-48 kHz); several: one voice from all")
    p.add_argument("-o", "--output", help="voice file to write (default: REF with suffix .voice)")
    p.add_argument("--encoder", help="encoder checkpoint (default: resemblyzer's pretrained weights)")

    p = _add(sub, "verify", cmd_verify, "cosine similarity of two recordings (or voice files) and a same/different decision")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--threshold", type=float, help="decision threshold (default: calibrated, see README)")
    p.add_argument("--encoder")

    p = _add(sub, "info", cmd_info, "kind, format and dims of a checkpoint (rtclone, RTVC or resemblyzer)")
    p.add_argument("checkpoint")

    p = _add(sub, "clone", cmd_clone, "speak TEXT in the voice of REF (timings in --json)")
    p.add_argument("--ref", required=True, action="append", help="the voice: a recording (~5 s of speech, any rate 8-48 kHz) or "
                   "a voice file from `rtclone embed`; repeat it to clone from several (the mean of their embeddings)")
    p.add_argument("--text", help="text to speak (default: stdin)")
    p.add_argument("-o", "--output", default="out.wav")
    p.add_argument("--models", help="directory of checkpoints (encoder.pt, synthesizer.pt, vocoder.pt) or exported artifacts")
    p.add_argument("--encoder")
    p.add_argument("--synthesizer")
    p.add_argument("--vocoder", help="vocoder checkpoint (default with --synthesizer: Griffin-Lim)")
    p.add_argument("--backend", default="auto", choices=["auto", "torch", "cpu-native", "triton"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--play", action="store_true")
    _add_postfilter_arg(p)

    p = _add(sub, "demo", cmd_demo, "a first run: built-in voices, speaker verification, and cloning with the shipped models")
    p.add_argument("-o", "--output", default="rtclone-demo", help="folder for the references and the cloned wav")
    p.add_argument("--text", default="Hello! This voice was cloned from a few seconds of speech.")

    p = _add(sub, "export", cmd_export, "export models to ONNX or TorchScript (+ manifest) for the artifact runners")
    p.add_argument("--format", choices=("onnx", "torchscript"), default="onnx")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--encoder", help="encoder checkpoint (default: pretrained)")
    p.add_argument("--synthesizer")
    p.add_argument("--vocoder")
    p.add_argument("--inverter", help="a mel inverter (inverter.pt) for the exported set's Griffin-Lim")

    p = _add(sub, "serve", cmd_serve, "the WebSocket streaming server (also: python server.py)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--models", help="directory of exported or rtclone checkpoints (default: the shipped models)")
    p.add_argument("--voices-dir", help="voice registry directory (default: ~/.local/share/rtclone/voices)")
    p.add_argument("--token", help="require this bearer token (also $RTCLONE_TOKEN)")
    p.add_argument("--max-streams", type=int, help="streams computed at once (default: 4 per worker process)")
    p.add_argument("--max-queue", type=int, default=8)
    p.add_argument("--no-batch-vocoder", action="store_true", help="run each stream's vocoder alone (default: concurrent streams share batched vocoder steps)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch intra-op threads (default 1: streams run in parallel threads; more oversubscribes the cores)")
    p.add_argument("--workers", type=int,
                   help="synthesis processes, each with its own models (default: one per core, at most 4; 1: in the server's process)")
    p.add_argument("--int8-decoder", choices=("on", "off"),
                   help="the synthesizer's decoder with int8 weights (default: as the model folder's card.json says, else off)")

    p = _add(sub, "say", cmd_say, "speak text in a voice through a running server (streams; prints TTFA and RTF)")
    p.add_argument("--server", default="ws://127.0.0.1:8765")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--voice", help="an enrolled voice id")
    g.add_argument("--ref", help="reference audio file sent inline")
    p.add_argument("--text", help="text to speak (default: each line of stdin)")
    p.add_argument("-o", "--output", help="write the audio to this wav file")
    p.add_argument("--play", action="store_true", help="play as chunks arrive (needs the 'mic' extra)")
    p.add_argument("--token")
    p.add_argument("--options", help="synthesis options as a JSON object, e.g. '{\"seed\": 3}'")

    p = _add(sub, "mic", cmd_mic, "live microphone cloning: enrol from the mic, then speak typed text in that voice")
    p.add_argument("--server", default="ws://127.0.0.1:8765")
    p.add_argument("--text", help="text to speak (default: each line typed on stdin)")
    p.add_argument("--source", help="read this wav file instead of the microphone")
    p.add_argument("--name", default="microphone")
    p.add_argument("--min-voiced", type=float, default=5.0, help="seconds of voiced speech to enrol")
    p.add_argument("-o", "--output")
    p.add_argument("--no-play", action="store_true")
    p.add_argument("--token")

    p = _add(sub, "prune", cmd_prune, "one-shot block-sparse magnitude pruning of a vocoder checkpoint")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--sparsity", type=float, required=True, help="target block sparsity in [0, 1)")
    p.add_argument("--block", default="16x1", help="block shape ROWSxCOLS (default 16x1)")

    corpus = sub.add_parser("corpus", help="the built-in multi-voice corpus").add_subparsers(dest="corpus_cmd", metavar="ACTION", required=True)
    p = _add(corpus, "build", cmd_corpus_build, "build the corpus from flite / espeak-ng voices")
    p.add_argument("root", nargs="?", default="data/corpus")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--voices", type=int, default=40, help="number of voices (best quality first)")
    p.add_argument("--voice", action="append", help="a voice by name instead (repeatable)")
    p.add_argument("--utterances", type=int, default=120, help="training utterances per voice")
    p.add_argument("--extra", type=int, default=150, help="utterances of extra (training-only) sentences per training voice")
    p.add_argument("--extra2", type=int, default=0,
                   help="utterances of the second extra list per training voice (chapter 4: corpus v3)")
    p.add_argument("--extra3", type=int, default=0,
                   help="utterances of the third extra list per training voice (chapter 5: corpus v4)")
    p.add_argument("--heldout-voices", type=int, default=4)
    p.add_argument("--heldout-sentences", type=int, default=20)
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--dry-run", action="store_true", help="print the plan without rendering")
    p = _add(corpus, "test-set", cmd_corpus_test_set,
             "render sentences no corpus trains on in a built corpus's voices: a test set for `rtclone eval clone`")
    p.add_argument("source", help="a corpus built by `rtclone corpus build`")
    p.add_argument("root", help="where the test set goes (resumes there)")
    p.add_argument("--voice", action="append", help="a source voice by name (repeatable; default: the high-quality ones)")
    p.add_argument("--sentences", metavar="FILE", help="one sentence per line (default: the built-in test list)")
    p.add_argument("--jobs", type=int, default=1)

    train = sub.add_parser("train", help="train a model").add_subparsers(dest="train_cmd", metavar="MODEL", required=True)
    p = _add(train, "encoder", cmd_train_encoder, "GE2E training of the speaker encoder")
    p.add_argument("data", help="speaker-folder dataset (LibriSpeech / VoxCeleb / root/speaker/*.wav)")
    p.add_argument("out", help="run directory (checkpoints; resumes if present)")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--speakers-per-batch", type=int, default=64)
    p.add_argument("--utterances-per-speaker", type=int, default=10)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--checkpoint-every", type=int, default=1000)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--embed", type=int, default=256)
    p.add_argument("--no-resume", action="store_true", help="start afresh even if OUT holds a checkpoint")

    add_train_vocoder_args(_add(train, "vocoder", cmd_train_vocoder,
                                "WaveRNN training on ground-truth or GTA mels, with gradual pruning; "
                                "on several processes: torchrun -m rtclone.train.vocoder"))

    p = _add(train, "synthesizer", cmd_train_synthesizer, "Tacotron training (prepares raw corpora first); DDP: torchrun -m rtclone.train.synthesizer")
    p.add_argument("data", help="prepared dir (metadata.json) or (audio, transcript, speaker) folders, e.g. the built-in corpus")
    p.add_argument("out", help="run directory (checkpoints; resumes if present)")
    p.add_argument("--encoder", help="encoder for the utterance embeddings (default: pretrained)")
    p.add_argument("--prepared", help="where to prepare raw data (default: OUT/prepared)")
    p.add_argument("--prepare-only", action="store_true", help="prepare the data, do not train")
    p.add_argument("--jobs", type=int, default=1, help="processes preparing raw data (one thread each)")
    p.add_argument("--split", choices=("train", "eval"), default="train",
                   help="which split of the built-in corpus to prepare (eval: held out, for --val)")
    add_train_synthesizer_args(p)

    p = _add(train, "gta", cmd_train_gta, "export ground-truth-aligned mels of a prepared set, for vocoder training")
    p.add_argument("checkpoint")
    p.add_argument("prepared")
    p.add_argument("out")

    p = _add(train, "inverter", cmd_train_inverter, "the learned mel -> linear map Griffin-Lim runs on (rtclone.mel_inverter)")
    p.add_argument("corpus", help="a built corpus (rtclone corpus build): its train split trains, its eval split validates")
    p.add_argument("out", help="run folder: inverter.pt, inverter_optimizer.pt, log.jsonl, the cached frame pairs")
    p.add_argument("--steps", type=int, default=8000)
    p.add_argument("--batch", type=int, default=32, help="windows per step")
    p.add_argument("--frames", type=int, default=40, help="output frames per window")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam's rate at step 0 (cosine decay to 0 at --steps)")
    p.add_argument("--sc", type=float, default=1.0, help="weight of the spectral-convergence loss beside the L1 log loss")
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--context", type=int, default=2, help="mel frames seen on each side (the stream's look-ahead)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-every", type=int, default=1000)
    p.add_argument("--jobs", type=int, default=1, help="processes computing the frame pairs")
    p.add_argument("--gta", metavar="EXPORT", help="train on an `rtclone train gta` export's mels (paired with the true "
                   "magnitudes of their audio) instead of the corpus's true mels; the corpus's eval split still validates")
    p.add_argument("--init", metavar="CKPT", help="start from this inverter's weights (when OUT has no checkpoint yet)")

    ev = sub.add_parser("eval", help="evaluate a model").add_subparsers(dest="eval_cmd", metavar="WHAT", required=True)
    p = _add(ev, "encoder", cmd_eval_encoder, "EER over a folder of speakers, and a UMAP plot")
    p.add_argument("data")
    p.add_argument("--encoder")
    p.add_argument("--umap", help="write a UMAP projection PNG here")
    p.add_argument("--max-utterances", type=int, help="use at most this many utterances per speaker")

    p = _add(ev, "clone", cmd_eval_clone, "cloning quality on a built corpus: pocketsphinx WER and speaker similarity, "
             "seen and held-out voices, ground truth as the ceiling")
    p.add_argument("corpus", help="a corpus built by `rtclone corpus build`")
    p.add_argument("--seen", type=int, default=8, help="training voices to evaluate")
    p.add_argument("--heldout", type=int, default=4, help="held-out voices to evaluate")
    p.add_argument("--sentences", type=int, default=5, help="held-out sentences per voice")
    p.add_argument("--ref-seconds", type=float, default=5.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-copy-synthesis", action="store_true",
                   help="skip vocoding the ground-truth mels (the vocoder-only WER and similarity)")
    p.add_argument("--teacher-forced", action="store_true",
                   help="also vocode the synthesizer's mels when fed the true frames (its WER without exposure bias)")
    p.add_argument("-o", "--output", help="write the JSON report here")
    p.add_argument("--models", help="model directory (default: the shipped models)")
    p.add_argument("--encoder")
    p.add_argument("--synthesizer")
    p.add_argument("--vocoder", help="vocoder checkpoint (default with --synthesizer: Griffin-Lim)")
    p.add_argument("--griffin-lim-power", type=float,
                   help="magnitude sharpening of the Griffin-Lim vocoder (default: rtclone.audio.GRIFFIN_LIM_POWER)")
    p.add_argument("--griffin-lim-formants", type=float, metavar="BETA",
                   help="formant enhancement of the mel before Griffin-Lim, 0-1 (default: rtclone.audio.GRIFFIN_LIM_FORMANTS)")
    p.add_argument("--griffin-lim-whole", action="store_true",
                   help="Griffin-Lim on each whole text chunk (the pre-streaming way) instead of streamed segments")
    p.add_argument("--griffin-lim-inverter", choices=("on", "off"),
                   help="off: Griffin-Lim on the filterbank's pseudo-inverse even when the models ship an inverter.pt")
    p.add_argument("--speaker-contrast", type=float, metavar="A",
                   help="condition on normalise(e + A (e - mean)), the mean of the training speakers (the model folder's "
                        "speaker_mean.npy), 0-4 (default: 0, the embedding itself)")
    _add_postfilter_arg(p)
    _add_asr_cache_arg(p)
    p.add_argument("--save-audio", metavar="DIR",
                   help="also write every clone and each voice's reference as DIR/<speaker>/<utterance id>.wav and "
                        "DIR/<speaker>/reference.wav, to listen to or score with another judge")
    p.add_argument("--jobs", type=int, default=1,
                   help="processes to share the voices among (one thread each; the report is the same as one process's)")

    p = _add(ev, "stats", cmd_eval_stats, "confidence intervals of `eval clone` reports: the WER ratio to the recordings, "
             "or B's change in word errors against A on the same voices and sentences (crossed bootstrap)")
    p.add_argument("reports", nargs="+", metavar="REPORT", help="one report (its intervals) or two, A then B (the change)")
    p.add_argument("--group", choices=("seen", "heldout"), action="append", help="default: both that the reports have")
    p.add_argument("--sentences", help="only these sentence indices, e.g. 12-19 or 0,3,5 (the ones not chosen on)")
    p.add_argument("--resamples", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output", help="write the JSON here")

    p = _add(ev, "vocoder", cmd_eval_vocoder, "a vocoder checkpoint against Griffin-Lim on a prepared set's "
             "ground-truth (and GTA) mels: pocketsphinx WER, mel distance and speaker similarity")
    p.add_argument("prepared", help="a prepared set (`rtclone train synthesizer ... --prepare-only`)")
    p.add_argument("checkpoint", help="vocoder checkpoint (rtclone or RTVC)")
    p.add_argument("--gta", help="an `rtclone train gta` export of the same set: also vocode its mels")
    p.add_argument("--items", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backend", default="auto", help="vocoder backend: auto | torch | cpu-native | triton")
    p.add_argument("--postfilter", action="store_true",
                   help="also report the checkpoint's output through the mel-envelope post-filter (rows vocoder_pf_*)")
    p.add_argument("--unbatched", action="store_true",
                   help="generate each item as one sequence (as streaming does) instead of RTVC's folded batches")
    _add_asr_cache_arg(p)
    p.add_argument("-o", "--output", help="write the JSON report here")

    bench = sub.add_parser("bench", help="one measurement").add_subparsers(dest="bench_cmd", metavar="WHAT", required=True)
    p = _add(bench, "encoder", cmd_bench_encoder, "time to embed a reference")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--encoder")
    p = _add(bench, "server", cmd_bench_server, "TTFA and real-time streams of a loopback server under 1..N clients (source checkout)")
    p.add_argument("--engine", default="default", choices=["default", "random", "fake"])
    p.add_argument("--models", help="model directory for --engine default (default: the shipped models)")
    p.add_argument("--clients", default="1,2,4,8", help="comma-separated concurrency levels")
    p.add_argument("--requests", type=int, default=3, help="requests per client")
    p.add_argument("--no-batch-vocoder", action="store_true")
    p.add_argument("--workers", type=int, help="--engine default: synthesis processes (default: as `rtclone serve`)")
    p = _add(bench, "synthesizer", cmd_bench_synthesizer, "mel frames/s and time to the first mel chunk (random weights)")
    p.add_argument("--dims", choices=("small", "rtvc"), default="small")
    p.add_argument("--frames", type=int, default=200)
    p.add_argument("--runs", type=int, default=5)
    p = _add(bench, "vocoder", cmd_bench_vocoder, "vocoder samples/s and real-time factor (RTVC dims, random weights)")
    p.add_argument("--sparsity", type=float, default=0.96)
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--backend", default="auto", choices=["auto", "torch", "cpu-native"])
    p.add_argument("--batched", action="store_true", help="fold into batched segments (target 8000 / overlap 800)")
    p.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``rtclone`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        try:
            result = args.func(args)
        except OSError as exc:  # a file system problem no library call named: an error, not a traceback
            raise FileSystemError(f"{exc.filename}: {exc.strerror}" if exc.filename else str(exc)) from exc
    except RtcloneError as exc:
        if getattr(args, "json", False):
            print(json.dumps({"ok": False, "error": {"code": exc.code, "message": str(exc)}}))
        else:
            print(f"rtclone: error: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        return 130
    _emit({k: v for k, v in result.items() if v is not None}, getattr(args, "json", False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
