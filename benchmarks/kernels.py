"""Native WaveRNN loop throughput: single stream vs two concurrent streams, fp32 vs fp16, dense vs sparse.

RTVC dims (rnn 512, fc 512, 9 bits), random weights block-pruned with 16x1 blocks. For each
(sparsity, weight dtype): samples/s of one stream on one thread, and of two streams run at the
same time on two threads, (a) as two Python threads each calling generate (GIL released), and
(b) as one call with B = 2 and 2 OpenMP threads. The baseline in the same run is the plain-torch
reference loop (dense ops, one stream). Both wall-clock and CPU-time figures are reported: the
machine is shared, and CPU time is what the work costs on an idle core.

    python benchmarks/kernels.py [--quick] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from pathlib import Path

import torch
from _common import run_record

from rtclone.kernels.cpu import NativeWaveRNN, available, draw_uniforms, reference_generate
from rtclone.kernels.cpu.bench import machine_info, measure, random_state_dict


def _two_threads(model: NativeWaveRNN, cond: torch.Tensor, uni: torch.Tensor):
    def run():
        ts = [threading.Thread(target=model.generate, args=(cond[b : b + 1], uni[b : b + 1])) for b in range(2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if not available():
        raise SystemExit("native kernel unavailable: build rtclone with a C compiler")
    sparsities = [0.0, 0.9, 0.96] if args.quick else [0.0, 0.5, 0.8, 0.9, 0.96, 0.99]
    reps = 3 if args.quick else 5
    load0 = os.getloadavg()
    g = torch.Generator().manual_seed(0)
    steps_max = 4000 if args.quick else 16000
    cond = torch.randn(2, steps_max, 208, generator=g) * 0.5
    uni = draw_uniforms(2, steps_max, 0)
    print(f"machine: {machine_info()}  load avg {load0[0]:.1f}")

    ref_steps = 20 if args.quick else 60
    sd0 = random_state_dict(0.0)
    m = measure(lambda: reference_generate(sd0, cond[:1, :ref_steps], uni[:1, :ref_steps]), reps=reps)
    baseline = {"wall": ref_steps / m["median"], "cpu": ref_steps / m["cpu"]}
    print(f"torch reference (dense, 1 stream): {baseline['wall']:.0f} samples/s wall, {baseline['cpu']:.0f} per CPU-second")

    rows = []
    print(f"\n{'sparsity':>8} {'dtype':>8} {'path':>6} | {'1 stream':>10} | {'2 py-thr /stream':>16} {'ratio':>6} | "
          f"{'B=2 omp /stream':>15} {'ratio':>6} | (CPU-time based: 1 stream, 2 thr ratio)")
    for sp in sparsities:
        sd = random_state_dict(sp, seed=0)
        steps = steps_max if sp >= 0.8 else steps_max // 8
        c, u = cond[:, :steps], uni[:, :steps]
        for dtype in (torch.float32, torch.float16):
            single = NativeWaveRNN(sd, value_dtype=dtype)
            omp = NativeWaveRNN(sd, value_dtype=dtype, threads=2)
            path = "dense" if single.mats[1].col_idx is None else "sparse"
            m1 = measure(lambda: single.generate(c[:1], u[:1]), reps=reps)
            m2 = measure(_two_threads(single, c, u), reps=reps)
            m3 = measure(lambda: omp.generate(c, u), reps=reps)
            r = {
                "sparsity": sp,
                "dtype": str(dtype).replace("torch.", ""),
                "path": path,
                "single_wall": steps / m1["median"],
                "two_threads_per_stream_wall": steps / m2["median"],
                "omp_b2_per_stream_wall": steps / m3["median"],
                "single_cpu": steps / m1["cpu"],
                "two_threads_per_stream_cpu": 2 * steps / m2["cpu"],
                "omp_b2_per_stream_cpu": 2 * steps / m3["cpu"],
                "spread_single_wall": [steps / m1["max"], steps / m1["min"]],
            }
            rows.append(r)
            ratio2 = r["two_threads_per_stream_wall"] / r["single_wall"]
            ratio3 = r["omp_b2_per_stream_wall"] / r["single_wall"]
            print(f"{sp * 100:>7g}% {r['dtype']:>8} {path:>6} | {r['single_wall']:>10.0f} | "
                  f"{r['two_threads_per_stream_wall']:>16.0f} {ratio2:>6.2f} | {r['omp_b2_per_stream_wall']:>15.0f} {ratio3:>6.2f} | "
                  f"{r['single_cpu']:.0f}, {r['two_threads_per_stream_cpu'] / r['single_cpu']:.2f}")
    load1 = os.getloadavg()
    print(f"load average start/end {load0[0]:.1f} / {load1[0]:.1f}: shared machine, wall figures are noisy")
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "kernels_quick" if args.quick else "kernels"  # a quick run never overwrites the full one
    out = {
        **run_record("kernels", args.quick, load0, load1),
        "baseline_torch_reference_samples_per_s": baseline,
        "rows": rows,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (args.out / f"{stem}.json").write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out / (stem + '.json')}")


if __name__ == "__main__":
    main()
