"""Does continuous batching of vocoder blocks across concurrent streams raise throughput? (issue 7)

N = 1, 2, 4, 8 concurrent streams, each in its own thread, each vocoding ``--seconds`` of a random
mel with ``rtclone.vocoder_gen.stream`` (conditioning network, native sample loop with one kernel
thread, mu-law decode, de-emphasis: the server's per-stream path), in two ways:
  unbatched   every stream calls its runner on its own (today's server);
  batched<=M  the streams' blocks go through one VocoderBatcher (one worker thread) that stacks up
              to M rows per kernel call (M = 4 and 8; the native kernel advances 4 rows in lockstep);
  batched<=4x2w  the same with two worker threads (two batches can run at once on two cores).
Models: random WaveRNNs with block-pruned (16x1) loop weights, RTVC dims (rnn = fc = 512) at 96 %
sparsity and rnn = fc = 256 at 90 %. Modes are interleaved within each repeat so background load
hits them alike; ratios are taken within the same run. Per mode and N: aggregate samples/s
(N x samples / wall), per-stream real-time factor (stream wall / audio seconds), process CPU
seconds per audio second and samples per process-CPU second (on a shared machine the fair
measure of cost: more runnable threads win a bigger share of contended cores), median and spread
over repeats. Writes JSON.

    python benchmarks/vocoder_batching.py [--seconds 2] [--runs 3] [--streams 1,2,4,8] [--quick]
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from pathlib import Path

import numpy as np
import torch
from _common import run_record, write_json

from rtclone.kernels.cpu import available
from rtclone.kernels.cpu.bench import random_state_dict
from rtclone.vocoder import VocoderDims, WaveRNN
from rtclone.vocoder_batch import BatcherOptions, VocoderBatcher
from rtclone.vocoder_gen import VocoderOptions, stream

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = {"rtvc512@96%": (512, 0.96), "256@90%": (256, 0.90)}

def modes_for(n: int) -> dict[str, BatcherOptions | None]:
    """The variants measured at N streams: unbatched, and batchers that can make a difference there."""
    modes: dict[str, BatcherOptions | None] = {"unbatched": None, "batched<=4": BatcherOptions(max_batch=4)}
    if n > 4:
        modes["batched<=8"] = BatcherOptions(max_batch=8)
    if n >= 4:
        modes["batched<=4x2w"] = BatcherOptions(max_batch=4, workers=2)  # two batches at once (2 cores)
    return modes


def build_model(rnn_dims: int, sparsity: float, seed: int = 0) -> WaveRNN:
    """A random WaveRNN (RTVC dims except rnn/fc) whose loop matrices are block-pruned to ``sparsity``."""
    torch.manual_seed(seed)
    model = WaveRNN(VocoderDims(rnn_dims=rnn_dims, fc_dims=rnn_dims)).eval()
    loop = random_state_dict(sparsity, rnn_dims=rnn_dims, fc_dims=rnn_dims, seed=seed)
    model.load_state_dict(loop, strict=False)
    return model


def run_streams(model: WaveRNN, mel: torch.Tensor, n: int, batcher: VocoderBatcher | None) -> dict:
    """N concurrent streams of ``mel`` (seeds 0..N-1); wall, per-stream seconds, CPU seconds, samples."""
    barrier = threading.Barrier(n + 1)
    per_stream, samples, errors = [0.0] * n, [0] * n, []

    def work(i: int) -> None:
        opts = VocoderOptions(seed=i, backend="cpu-native", fade_out=0.0)
        barrier.wait()
        t0 = time.perf_counter()
        try:
            samples[i] = sum(len(c) for c in stream(model, [mel], opts, batcher=batcher))
        except Exception as exc:  # noqa: BLE001 - reported after the join
            errors.append(exc)
        per_stream[i] = time.perf_counter() - t0

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    c0 = time.process_time()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if errors:
        raise errors[0]
    return {"wall_s": wall, "stream_s": per_stream, "cpu_s": cpu, "samples": sum(samples)}


def spread(xs: list[float]) -> dict:
    q1, med, q3 = np.percentile(xs, [25, 50, 75])
    return {"median": float(med), "q1": float(q1), "q3": float(q3), "min": float(min(xs)), "max": float(max(xs)), "n": len(xs)}


def bench_config(model: WaveRNN, seconds: float, levels: list[int], runs: int) -> dict:
    hop = model.dims.hop_length
    frames = int(round(seconds * model.dims.sample_rate / hop)) + 1
    mel = torch.rand(model.dims.feat_dims, frames, generator=torch.Generator().manual_seed(1)) * 2 - 1  # (80, T)
    audio_s = (frames - 1) * hop / model.dims.sample_rate
    run_streams(model, mel, 1, None)  # warm-up: packs the kernel, touches the weights
    out = {}
    for n in levels:
        modes = modes_for(n)
        raw: dict[str, list[dict]] = {m: [] for m in modes}
        batch_sizes: dict[str, dict] = {}
        for _ in range(runs):
            for mode, bopts in modes.items():
                if bopts is None:
                    raw[mode].append(run_streams(model, mel, n, None))
                    continue
                with VocoderBatcher(bopts) as batcher:
                    raw[mode].append(run_streams(model, mel, n, batcher))
                for k, v in batcher.batch_sizes.items():
                    batch_sizes.setdefault(mode, {}).setdefault(str(k), 0)
                    batch_sizes[mode][str(k)] += v
        level = {}
        for mode, rs in raw.items():
            level[mode] = {
                "samples_per_s": spread([r["samples"] / r["wall_s"] for r in rs]),
                "stream_rtf": spread([s / audio_s for r in rs for s in r["stream_s"]]),
                "cpu_s_per_audio_s": spread([r["cpu_s"] / (n * audio_s) for r in rs]),
                "samples_per_cpu_s": spread([r["samples"] / r["cpu_s"] for r in rs]),
                "kernel_calls_by_rows": batch_sizes.get(mode),
            }
        base = raw["unbatched"]
        for mode in list(modes)[1:]:  # ratios per repeat (interleaved runs), then median
            pairs = list(zip(raw[mode], base))
            level[mode]["speedup_vs_unbatched"] = spread([r["samples"] / r["wall_s"] / (b["samples"] / b["wall_s"]) for r, b in pairs])
            level[mode]["cpu_efficiency_vs_unbatched"] = spread([b["cpu_s"] / b["samples"] / (r["cpu_s"] / r["samples"]) for r, b in pairs])
        out[str(n)] = level
    return {"audio_s_per_stream": audio_s, "levels": out}


def _ratio(r: dict | None) -> str:
    return "" if r is None else f"{r['median']:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=2.0, help="audio seconds per stream")
    ap.add_argument("--runs", type=int, default=3, help="repeats per level (modes interleaved)")
    ap.add_argument("--streams", default="1,2,4,8", help="concurrency levels")
    ap.add_argument("--configs", default=",".join(CONFIGS), help=f"subset of {list(CONFIGS)}")
    ap.add_argument("--quick", action="store_true", help="0.5 s per stream, 1 run (smoke test)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args()
    if not available():
        raise SystemExit("the native CPU kernel is not built: this benchmark measures it")
    torch.set_num_threads(1)  # the conditioning network; the kernel runs with one thread (VocoderOptions.threads)
    seconds, runs = (0.5, 1) if args.quick else (args.seconds, args.runs)
    levels = [int(x) for x in args.streams.split(",")]
    load0 = os.getloadavg()
    results = {}
    for name in args.configs.split(","):
        rnn, sparsity = CONFIGS[name]
        results[name] = {"rnn_dims": rnn, "fc_dims": rnn, "sparsity": sparsity,
                         **bench_config(build_model(rnn, sparsity), seconds, levels, runs)}  # fmt: skip
    record = run_record("vocoder_batching", args.quick, load0, os.getloadavg())
    record.update({
        "note": "machine shared with two training processes (load average above): compare modes within this run only",
        "kernel_threads": 1, "batcher_max_wait_ms": BatcherOptions().max_wait_ms,
        "configs": results,
    })  # fmt: skip
    print(f"machine: {record['machine']}; 1-min load average {load0[0]:.2f} -> {os.getloadavg()[0]:.2f}")
    print("NOTE: two model-training processes share these cores; absolute figures are depressed, ratios are same-run.")
    print(f"{'config':>12} {'N':>2} {'mode':>13} {'samples/s p50':>14} {'[min-max]':>17} {'stream RTF p50':>14} "
          f"{'[q1-q3]':>13} {'samples/CPU-s':>13} {'x wall':>6} {'x CPU':>6}")  # fmt: skip
    for name, res in results.items():
        for n, level in res["levels"].items():
            for mode, r in level.items():
                s, f = r["samples_per_s"], r["stream_rtf"]
                sp, ce = r.get("speedup_vs_unbatched"), r.get("cpu_efficiency_vs_unbatched")
                print(f"{name:>12} {n:>2} {mode:>13} {s['median']:>14.0f} {s['min']:>8.0f}-{s['max']:<8.0f} {f['median']:>14.3f} "
                      f"{f['q1']:>6.3f}-{f['q3']:<6.3f} {r['samples_per_cpu_s']['median']:>13.0f} "
                      f"{_ratio(sp):>6} {_ratio(ce):>6}")  # fmt: skip
    write_json(Path(args.out) / f"vocoder_batching{'_quick' if args.quick else ''}.json", record)


if __name__ == "__main__":
    main()
