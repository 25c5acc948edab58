"""``rtclone bench``: one measurement per command, with the figures a user asks for (the benchmarks with
baselines, spreads and JSON live in ``benchmarks/``)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from .cli_train import _load_encoder
from .errors import OptionsError


def cmd_bench_synthesizer(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np
    import torch

    from .synthesizer import SynthesizerDims, Tacotron, TacotronOptions, stream

    dims = SynthesizerDims.small() if args.dims == "small" else SynthesizerDims()
    torch.manual_seed(0)
    model = Tacotron(dims).eval()
    opts = TacotronOptions(stop_threshold=None, on_max_length="truncate", detect_attention_failure=False,
                           max_decoder_steps=args.frames // model.r, min_guard_frames=args.frames)  # fmt: skip
    text = "the quick brown fox jumps over the lazy dog, " * 4
    emb = np.full(dims.speaker_embedding_size, 1 / 16, np.float32)
    fps, first = [], []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        n, t_first = 0, None
        for chunk in stream(model, text, emb, opts):
            t_first = t_first if t_first is not None else time.perf_counter() - t0
            n += chunk.shape[1]
        fps.append(n / (time.perf_counter() - t0))
        first.append(t_first)
    return {"dims": args.dims, "frames": n, "frames_per_s": float(np.median(fps)), "frames_per_s_iqr": float(np.subtract(*np.percentile(fps, [75, 25]))),
            "first_chunk_s": float(np.median(first)), "realtime_x": float(np.median(fps)) / 80.0, "runs": args.runs}  # fmt: skip

def cmd_bench_server(args: argparse.Namespace) -> dict[str, Any]:
    """Loopback load on a real server: `benchmarks/latency.py` (needs a source checkout)."""
    import importlib.util

    from .errors import BackendUnavailableError

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "latency.py"
    if not path.is_file():
        raise BackendUnavailableError(f"`rtclone bench server` runs {path.name} from a source checkout; not found at {path}")
    spec = importlib.util.spec_from_file_location("rtclone_bench_latency", path)
    mod = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(mod)
        clients = [int(c) for c in args.clients.split(",")]
        try:
            from .serve.server import default_workers

            record = mod.run(args.engine, clients, models=args.models, requests=args.requests,
                             batch_vocoder=not args.no_batch_vocoder,
                             workers=default_workers() if args.workers is None else args.workers)  # fmt: skip
        except ValueError as exc:
            raise OptionsError(str(exc)) from exc
    finally:
        sys.path.remove(str(path.parent))
    lines = [f"server benchmark, engine {args.engine}, vocoder batching {'on' if not args.no_batch_vocoder else 'off'}, "
             f"workers {record['workers']}"]
    for n, lv in record["levels"].items():
        lines.append(f"{n} client(s): TTFA p50 {lv['ttfa_s']['p50'] * 1000:.0f} ms p95 {lv['ttfa_s']['p95'] * 1000:.0f} ms, "
                     f"client RTF p50 {lv['client_rtf']['p50']:.2f}, real-time streams {lv['realtime_streams']}/{lv['streams']}")  # fmt: skip
    return {"message": "\n".join(lines), "message_only": True, **record}

def cmd_bench_encoder(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np

    from .encoder import embed_utterance

    model = _load_encoder(args.encoder)
    rng = np.random.default_rng(0)
    wav = (0.1 * rng.standard_normal(int(args.seconds * 16000))).astype(np.float32)
    times = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        embed_utterance(model, wav)
        times.append(time.perf_counter() - t0)
    q1, med, q3 = np.percentile(times, [25, 50, 75])
    return {"seconds_of_audio": args.seconds, "median_s": med, "iqr_s": q3 - q1, "runs": args.runs}

def cmd_bench_vocoder(args: argparse.Namespace) -> dict[str, Any]:
    from .kernels.cpu.bench import bench_vocoder

    return bench_vocoder(sparsity=args.sparsity, seconds=args.seconds, backend=args.backend, batched=args.batched, seed=args.seed)
