"""Server latency under a bounded loopback load: 1, 2, 4, 8 concurrent streaming clients.

A server runs in this process on its own thread and event loop (127.0.0.1, a free port, a
temporary voice folder). For each concurrency level N, N clients start together and each streams
``--requests`` utterances one after another. Per stream it records the client-side time to first
audio (TTFA), the client-side RTF (wall time from request to last audio / audio seconds), the
server's compute RTF, and whether the stream was *served in real time*: every chunk arrived no
later than the audio before it would have finished playing after a ``--jitter`` ms buffer.

Baseline in the same run: the engine called directly (no server, no socket), one stream.
Prints a table (median and spread) and writes JSON + PNG.

    python benchmarks/latency.py --engine fake            # the deterministic test engine
    python benchmarks/latency.py --engine default         # rtclone's default models (make_engine)
    python benchmarks/latency.py --engine random          # random weights: tiny synthesizer, RTVC-size vocoder at 96 %
    python benchmarks/latency.py --clients 1,2 --requests 2 --no-batch-vocoder

Library use (``rtclone bench server``): ``run(engine, clients, ...) -> dict`` returns the record
(see :func:`run`); nothing is printed or written.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
TEXT = "The quick brown fox jumps over the lazy dog, and then it runs away into the woods."
ENGINES = ("fake", "default", "random")
# a random tiny Tacotron has no trained stop token or alignment: run it to a fixed length instead
RANDOM_TACOTRON = {"detect_attention_failure": False, "on_max_length": "truncate", "max_frames_per_char": 2.0, "stop_threshold": None}


def _import_from(folder: Path, name: str):
    """Import a helper module next to this script (``_common``) or in tests/ (``fakes``)."""
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    return importlib.import_module(name)


def build_engine(kind: str, models: str | None, chunk_delay_s: float, workers: int = 1, threads: int = 1):
    if kind == "fake":
        # ~0.1 s chunks that take chunk_delay_s of wall time each (sleep: no CPU) → RTF ≈ delay / 0.1
        fake = _import_from(ROOT / "tests", "fakes").FakeEngine
        return fake(chunk_s=0.1, chunk_delay_s=chunk_delay_s, first_delay_s=chunk_delay_s, seconds_per_char=0.06)
    if kind == "random":
        import torch

        from rtclone.checkpoints import load_encoder
        from rtclone.kernels.cpu.bench import random_state_dict
        from rtclone.pipeline import Cloner
        from rtclone.synthesizer import SynthesizerDims, Tacotron
        from rtclone.vocoder import VocoderDims, WaveRNN

        torch.manual_seed(0)
        voc = WaveRNN(VocoderDims()).eval()  # RTVC dims, loop weights block-pruned to 96 %
        voc.load_state_dict(random_state_dict(0.96), strict=False)
        return Cloner(load_encoder(), Tacotron(SynthesizerDims.tiny()).eval(), voc, tacotron_overrides=RANDOM_TACOTRON)
    from rtclone.serve.server import make_engine

    if workers > 1:  # as `rtclone serve` runs it: synthesis in worker processes
        import functools

        from rtclone.serve.workers import WorkerEngine

        return WorkerEngine(functools.partial(make_engine, models), workers=workers, threads=threads)
    return make_engine(models)


def reference_audio() -> np.ndarray:
    return _import_from(ROOT / "tests", "fakes").voice_like(3.0, 160.0)


def pct(xs: list[float], q: float) -> float | None:
    return float(np.percentile(xs, q)) if xs else None


def summarise(xs: list[float]) -> dict:
    return {"p50": pct(xs, 50), "p95": pct(xs, 95), "min": min(xs) if xs else None, "max": max(xs) if xs else None}


def baseline(engine, embedding: np.ndarray, text: str, reps: int) -> dict:
    """The engine alone: TTFA and RTF of one stream, no server in between."""
    from rtclone.pipeline import SynthesisOptions

    ttfa, rtf = [], []
    for _ in range(reps):
        t0 = time.perf_counter()
        first, n = None, 0
        for chunk in engine.stream(text, embedding, SynthesisOptions()):
            first = first if first is not None else time.perf_counter() - t0
            n += len(chunk)
        ttfa.append(first)
        rtf.append((time.perf_counter() - t0) / (n / engine.sample_rate))
    return {"ttfa_s": summarise(ttfa), "rtf": summarise(rtf)}


async def one_client(url: str, voice_id: str, text: str, requests: int, jitter_s: float) -> list[dict]:
    from rtclone.client import Client

    out = []
    async with await Client.connect(url) as client:
        for _ in range(requests):
            arrivals: list[tuple[float, int]] = []  # (time, samples before this chunk)
            samples = [0]

            def on_chunk(pcm: np.ndarray) -> None:
                arrivals.append((time.perf_counter(), samples[0]))
                samples[0] += len(pcm)

            t0 = time.perf_counter()
            r = await client.say(text, voice_id=voice_id, on_chunk=on_chunk)
            sr = r.sample_rate
            t_first = arrivals[0][0]
            late = max(t - t_first - before / sr for t, before in arrivals)  # > 0: behind playback
            out.append({
                "ttfa_s": r.ttfa_s, "audio_s": r.audio_s, "client_rtf": (arrivals[-1][0] - t0) / r.audio_s,
                "server_rtf": r.rtf, "max_lateness_s": late, "realtime": late <= jitter_s,
            })  # fmt: skip
    return out


def start_server_thread(engine, max_streams: int, voices_dir: str, batch_vocoder: bool = True):
    """A server on its own event loop thread; returns (port, stop)."""
    from rtclone.serve.server import ServerLimits, running_server

    ready, box = threading.Event(), {}

    async def main() -> None:
        stop = asyncio.Event()
        box["stop"] = lambda: loop.call_soon_threadsafe(stop.set)
        limits = ServerLimits(max_streams=max_streams, max_queue=64)
        async with running_server(engine, voices_dir=voices_dir, limits=limits, batch_vocoder=batch_vocoder) as srv:
            box["port"] = srv.port
            ready.set()
            await stop.wait()

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    if not ready.wait(120):
        raise RuntimeError("the server did not start")
    return box["port"], lambda: (box["stop"](), thread.join(30))


async def run_levels(url: str, levels: list[int], requests: int, text: str, jitter_s: float) -> dict:
    from rtclone.client import enrol

    voice_id = await enrol(url, reference_audio(), "bench")
    await one_client(url, voice_id, text, 1, jitter_s)  # warm-up
    results = {}
    for n in levels:
        t0 = time.perf_counter()
        per_client = await asyncio.wait_for(
            asyncio.gather(*(one_client(url, voice_id, text, requests, jitter_s) for _ in range(n))), 600
        )
        streams = [s for c in per_client for s in c]
        results[n] = {
            "clients": n, "streams": len(streams), "wall_s": time.perf_counter() - t0,
            "ttfa_s": summarise([s["ttfa_s"] for s in streams]),
            "client_rtf": summarise([s["client_rtf"] for s in streams]),
            "server_rtf": summarise([s["server_rtf"] for s in streams if s["server_rtf"] is not None]),
            "realtime_streams": sum(s["realtime"] for s in streams),
            "all_realtime": all(s["realtime"] for s in streams),
        }  # fmt: skip
    return results


def plot(results: dict, base: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = sorted(results)
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(ns, [results[n]["ttfa_s"]["p50"] * 1000 for n in ns], "o-", label="TTFA p50")
    a.plot(ns, [results[n]["ttfa_s"]["p95"] * 1000 for n in ns], "s--", label="TTFA p95")
    a.axhline(base["ttfa_s"]["p50"] * 1000, color="gray", ls=":", label="engine alone (p50)")
    a.set(xlabel="concurrent clients", ylabel="ms", xticks=ns, title="time to first audio")
    a.legend()
    b.bar([str(n) for n in ns], [results[n]["realtime_streams"] / results[n]["streams"] * 100 for n in ns])
    b.set(xlabel="concurrent clients", ylabel="% of streams", ylim=(0, 105), title="streams served in real time")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def run(
    engine: str = "fake",
    clients: Sequence[int] = (1, 2, 4, 8),
    *,
    models: str | None = None,
    requests: int = 3,
    text: str = TEXT,
    jitter_ms: float = 150.0,
    chunk_delay_s: float = 0.02,
    threads: int = 1,
    batch_vocoder: bool = True,
    baseline_reps: int = 3,
    workers: int = 1,
) -> dict:
    """Measure the server under 1..N concurrent streaming clients; returns the JSON-able record.

    ``engine``: "fake" (tests' deterministic engine, ``chunk_delay_s`` of sleep per 0.1 s chunk),
    "default" (``make_engine(models)``) or "random" (random weights, RTVC-size vocoder). ``clients``:
    the concurrency levels; each client streams ``text`` ``requests`` times. ``threads``: torch
    threads (real engines). ``workers``: synthesis processes of the "default" engine (1: in this process).
    ``batch_vocoder``: the server's shared vocoder batching (on by default,
    as in ``rtclone serve``). Record keys: engine, machine, batch_vocoder, text_chars,
    requests_per_client, jitter_ms, baseline_engine_alone {ttfa_s, rtf}, levels {N: {clients,
    streams, wall_s, ttfa_s, client_rtf, server_rtf (each p50/p95/min/max), realtime_streams,
    all_realtime}}.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    clients = list(clients)
    if not clients or any(not isinstance(n, int) or isinstance(n, bool) or n < 1 for n in clients):
        raise ValueError(f"clients must be positive integers, got {clients!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    if engine != "fake":
        import torch

        torch.set_num_threads(threads)
    eng = build_engine(engine, models, chunk_delay_s, workers if engine == "default" else 1, threads)
    try:
        emb = eng.embed(reference_audio(), 16000)
        base = baseline(eng, emb, text, reps=baseline_reps)
        with tempfile.TemporaryDirectory() as voices:
            port, stop = start_server_thread(eng, max(clients), voices, batch_vocoder)
            try:
                results = asyncio.run(run_levels(f"ws://127.0.0.1:{port}", clients, requests, text, jitter_ms / 1000))
            finally:
                stop()
    finally:
        if hasattr(eng, "close"):
            eng.close()
    machine = _import_from(Path(__file__).resolve().parent, "_common").machine
    return {"engine": engine, "machine": machine(load_avg=os.getloadavg()), "batch_vocoder": batch_vocoder,
            "workers": workers if engine == "default" else 1, "torch_threads": threads,
            "text_chars": len(text), "requests_per_client": requests, "jitter_ms": jitter_ms,
            "baseline_engine_alone": base, "levels": results}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engine", choices=ENGINES, default="fake")
    ap.add_argument("--models", default=None, help="model folder for --engine default")
    ap.add_argument("--clients", default="1,2,4,8", help="concurrency levels")
    ap.add_argument("--requests", type=int, default=3, help="utterances per client per level")
    ap.add_argument("--text", default=TEXT)
    ap.add_argument("--jitter-ms", type=float, default=150.0, help="client jitter buffer for the real-time check")
    ap.add_argument("--chunk-delay", type=float, default=0.02, help="fake engine: seconds of 'compute' per 0.1 s chunk")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (real engine)")
    ap.add_argument("--no-batch-vocoder", action="store_true", help="every stream runs its own vocoder loop")
    ap.add_argument("--workers", type=int, default=None,
                    help="--engine default: synthesis processes (default: as `rtclone serve`, one per core up to 4; 1: in-process)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args()
    from rtclone.serve.server import default_workers

    record = run(args.engine, [int(x) for x in args.clients.split(",")], models=args.models, requests=args.requests,
                 text=args.text, jitter_ms=args.jitter_ms, chunk_delay_s=args.chunk_delay, threads=args.threads,
                 batch_vocoder=not args.no_batch_vocoder,
                 workers=default_workers() if args.workers is None else args.workers)  # fmt: skip
    results, base = record["levels"], record["baseline_engine_alone"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"latency_{args.engine}{'_nobatch' if args.no_batch_vocoder else ''}"
    (out / f"{stem}.json").write_text(json.dumps(record, indent=2))
    plot(results, base, out / f"{stem}.png", f"rtclone server, engine={args.engine}, {record['machine']['cores']} cores")
    b = base["ttfa_s"]
    print(f"machine: {record['machine']}; vocoder batching {'on' if record['batch_vocoder'] else 'off'}; "
          f"workers {record['workers']}, torch threads {record['torch_threads']}")
    print(f"baseline (engine alone): TTFA p50 {b['p50'] * 1000:.1f} ms [{b['min'] * 1000:.1f}-{b['max'] * 1000:.1f}], "
          f"RTF p50 {base['rtf']['p50']:.3f}")  # fmt: skip
    print(f"{'clients':>7} {'streams':>7} {'TTFA p50':>9} {'TTFA p95':>9} {'spread':>17} {'cRTF p50':>8} {'sRTF p50':>8} {'realtime':>8}")
    for n, r in results.items():
        t = r["ttfa_s"]
        print(f"{n:>7} {r['streams']:>7} {t['p50'] * 1000:>7.1f}ms {t['p95'] * 1000:>7.1f}ms "
              f"{t['min'] * 1000:>7.1f}-{t['max'] * 1000:>6.1f}ms {r['client_rtf']['p50']:>8.3f} "
              f"{r['server_rtf']['p50']:>8.3f} {r['realtime_streams']:>4}/{r['streams']:<3}")  # fmt: skip
    print(f"wrote {out / f'{stem}.json'} and .png")


if __name__ == "__main__":
    main()
