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
    python benchmarks/latency.py --clients 1,2 --requests 2 --quick
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from _common import machine

ROOT = Path(__file__).resolve().parent.parent
TEXT = "The quick brown fox jumps over the lazy dog, and then it runs away into the woods."


def build_engine(kind: str, models: str | None, chunk_delay_s: float):
    if kind == "fake":
        sys.path.insert(0, str(ROOT / "tests"))
        from fakes import FakeEngine

        # ~0.1 s chunks that take chunk_delay_s of wall time each (sleep: no CPU) → RTF ≈ delay / 0.1
        return FakeEngine(chunk_s=0.1, chunk_delay_s=chunk_delay_s, first_delay_s=chunk_delay_s, seconds_per_char=0.06)
    from rtclone.serve.server import make_engine

    return make_engine(models)


def reference_audio() -> np.ndarray:
    sys.path.insert(0, str(ROOT / "tests"))
    from fakes import voice_like

    return voice_like(3.0, 160.0)


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


def start_server_thread(engine, max_streams: int, voices_dir: str):
    """A server on its own event loop thread; returns (port, stop)."""
    from rtclone.serve.server import ServerLimits, running_server

    ready, box = threading.Event(), {}

    async def main() -> None:
        stop = asyncio.Event()
        box["stop"] = lambda: loop.call_soon_threadsafe(stop.set)
        limits = ServerLimits(max_streams=max_streams, max_queue=64)
        async with running_server(engine, voices_dir=voices_dir, limits=limits) as srv:
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engine", choices=["fake", "default"], default="fake")
    ap.add_argument("--models", default=None, help="model folder for --engine default")
    ap.add_argument("--clients", default="1,2,4,8", help="concurrency levels")
    ap.add_argument("--requests", type=int, default=3, help="utterances per client per level")
    ap.add_argument("--text", default=TEXT)
    ap.add_argument("--jitter-ms", type=float, default=150.0, help="client jitter buffer for the real-time check")
    ap.add_argument("--chunk-delay", type=float, default=0.02, help="fake engine: seconds of 'compute' per 0.1 s chunk")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (real engine)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args()
    levels = [int(x) for x in args.clients.split(",")]
    if args.engine == "default":
        import torch

        torch.set_num_threads(args.threads)
    engine = build_engine(args.engine, args.models, args.chunk_delay)
    emb = engine.embed(reference_audio(), 16000)
    base = baseline(engine, emb, args.text, reps=3)
    with tempfile.TemporaryDirectory() as voices:
        port, stop = start_server_thread(engine, max(levels), voices)
        try:
            results = asyncio.run(run_levels(f"ws://127.0.0.1:{port}", levels, args.requests, args.text, args.jitter_ms / 1000))
        finally:
            stop()
    record = {"engine": args.engine, "machine": machine(load_avg=os.getloadavg()), "text_chars": len(args.text),
              "requests_per_client": args.requests, "jitter_ms": args.jitter_ms, "baseline_engine_alone": base, "levels": results}  # fmt: skip
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"latency_{args.engine}.json").write_text(json.dumps(record, indent=2))
    plot(results, base, out / f"latency_{args.engine}.png", f"rtclone server, engine={args.engine}, {record['machine']['cores']} cores")
    b = base["ttfa_s"]
    print(f"machine: {record['machine']}")
    print(f"baseline (engine alone): TTFA p50 {b['p50'] * 1000:.1f} ms [{b['min'] * 1000:.1f}-{b['max'] * 1000:.1f}], "
          f"RTF p50 {base['rtf']['p50']:.3f}")  # fmt: skip
    print(f"{'clients':>7} {'streams':>7} {'TTFA p50':>9} {'TTFA p95':>9} {'spread':>17} {'cRTF p50':>8} {'sRTF p50':>8} {'realtime':>8}")
    for n, r in results.items():
        t = r["ttfa_s"]
        print(f"{n:>7} {r['streams']:>7} {t['p50'] * 1000:>7.1f}ms {t['p95'] * 1000:>7.1f}ms "
              f"{t['min'] * 1000:>7.1f}-{t['max'] * 1000:>6.1f}ms {r['client_rtf']['p50']:>8.3f} "
              f"{r['server_rtf']['p50']:>8.3f} {r['realtime_streams']:>4}/{r['streams']:<3}")  # fmt: skip
    print(f"wrote {out / f'latency_{args.engine}.json'} and .png")


if __name__ == "__main__":
    main()
