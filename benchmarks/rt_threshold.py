"""Real-time threshold of the WaveRNN sample loop versus weight sparsity (issue 5).

For sparsity in {0, 50, 80, 90, 91, 95, 96.4, 97.8, 99} % and utterances of 0.5-16 s at 16 kHz,
the generation time of three loops, single stream and with RTVC's batched folding
(target 8000 / overlap 800 → B folds of 9600 steps):
  rtvc-torch  a dense, RTVC-style per-sample torch loop (nn.GRUCell / nn.Linear / Categorical),
              written here as the baseline;
  torch-ref   rtclone's plain-torch reference loop (rtclone.kernels.cpu.reference_generate);
  native      rtclone's native kernel (rtclone.kernels.cpu.NativeWaveRNN), block-sparse 16x1.

Method: the loop's cost depends only on the number of steps and on B, so the per-step cost is
measured for every B the lengths need (median of repeats) and the generation time of each length
is extrapolated as steps x cost(B). The torch loops do not skip zero weights, so they are measured
once (dense weights) and apply to every sparsity. Only the sample loop is timed (the conditioning
network is not run). Prints a table and writes JSON + PNG.

    python benchmarks/rt_threshold.py [--quick] [--threads N] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from _common import run_record

from rtclone.kernels.cpu import NativeWaveRNN, available, draw_uniforms, fold_count, reference_generate
from rtclone.kernels.cpu.bench import FOLD_OVERLAP, FOLD_TARGET, SAMPLE_RATE, machine_info, measure, random_state_dict

SPARSITIES = [0.0, 0.5, 0.8, 0.9, 0.91, 0.95, 0.964, 0.978, 0.99]
CROSSOVER_EXTRA = [0.1, 0.2, 0.3, 0.4]  # native only, for the sparse/dense crossover
LENGTHS = [0.5, 1.0, 2.0, 4.0, 8.0, 16.0]


class RTVCStyleLoop(nn.Module):
    """A straightforward dense per-sample loop in the style of RTVC's WaveRNN.generate (baseline)."""

    def __init__(self, sd: dict[str, torch.Tensor]) -> None:
        super().__init__()
        R = sd["rnn1.weight_hh_l0"].shape[1]
        self.aux = sd["rnn2.weight_ih_l0"].shape[1] - R
        self.I = nn.Linear(*sd["I.weight"].shape[::-1])
        self.rnn1 = nn.GRUCell(R, R)
        self.rnn2 = nn.GRUCell(R + self.aux, R)
        self.fc1 = nn.Linear(*sd["fc1.weight"].shape[::-1])
        self.fc2 = nn.Linear(*sd["fc2.weight"].shape[::-1])
        self.fc3 = nn.Linear(*sd["fc3.weight"].shape[::-1])
        own = {k.replace("_l0", ""): v for k, v in sd.items()}
        self.load_state_dict(own)
        self.R = R

    @torch.no_grad()
    def forward(self, mels: torch.Tensor, aux: torch.Tensor) -> torch.Tensor:  # (B, T, 80), (B, T, 128)
        B, T, _ = mels.shape
        a = self.aux
        h1, h2, x = torch.zeros(B, self.R), torch.zeros(B, self.R), torch.zeros(B, 1)
        out = []
        for t in range(T):
            a1, a2, a3, a4 = (aux[:, t, k * a : (k + 1) * a] for k in range(4))
            x = self.I(torch.cat([x, mels[:, t], a1], dim=1))
            h1 = self.rnn1(x, h1)
            x = x + h1
            h2 = self.rnn2(torch.cat([x, a2], dim=1), h2)
            x = x + h2
            x = F.relu(self.fc1(torch.cat([x, a3], dim=1)))
            x = F.relu(self.fc2(torch.cat([x, a4], dim=1)))
            posterior = F.softmax(self.fc3(x), dim=1)
            label = torch.distributions.Categorical(posterior).sample().float()
            x = (2 * label / (posterior.shape[1] - 1) - 1)[:, None]
            out.append(x)
        return torch.cat(out, dim=1)


def fmt_sparsity(sp: float | str) -> str:
    return sp if isinstance(sp, str) else f"{sp * 100:g}%"


def steps_and_batch(seconds: float) -> tuple[int, int, int]:
    """(audio samples, loop steps, B) for one utterance, single stream and folded."""
    total = int(round(seconds * SAMPLE_RATE))
    B = fold_count(total, FOLD_TARGET, FOLD_OVERLAP)
    return total, (total if B == 1 else FOLD_TARGET + 2 * FOLD_OVERLAP), B


CLOCK = {"name": "cpu"}  # set from --clock in main()


def step_cost(make_run, B: int, steps: int, reps: int, threads: int = 1) -> dict:
    """Seconds per loop step for B streams: wall median/min/max, cpu, and "est" (the figure used:
    CPU time / threads with --clock cpu, else the wall median)."""
    run = make_run(B, steps)
    m = measure(run, reps=reps, warmup=1)
    out = {k: (v / steps if k != "reps" else v) for k, v in m.items()} | {"steps_timed": steps, "B": B}
    out["est"] = out["cpu"] / max(1, min(threads, B)) if CLOCK["name"] == "cpu" else out["median"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer sparsities/lengths/repeats (< 1 min)")
    ap.add_argument("--threads", type=int, default=1, help="native threads across folds (batched mode)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    ap.add_argument("--clock", choices=["cpu", "wall"], default="cpu",
                    help="cpu: process CPU time (what an idle core would take; default on a shared machine); wall: wall time")
    args = ap.parse_args()
    CLOCK["name"] = args.clock
    torch.set_num_threads(1)
    if not available():
        raise SystemExit("native kernel unavailable: build rtclone with a C compiler")

    sparsities = [0.0, 0.9, 0.964] if args.quick else SPARSITIES
    extra = [] if args.quick else CROSSOVER_EXTRA
    lengths = [0.5, 2.0, 16.0] if args.quick else LENGTHS
    reps = 3 if args.quick else 5
    native_steps = 400 if args.quick else 2000
    torch_steps = 12 if args.quick else 60
    batches = sorted({1} | {steps_and_batch(s)[2] for s in lengths})
    t_start = time.time()
    load0 = os.getloadavg()
    print(f"machine: {machine_info()}  load avg {load0[0]:.1f}  threads(batched)={args.threads}  clock={args.clock}")
    print(f"lengths {lengths} s → fold batches {batches}; per-step cost measured, lengths extrapolated")

    g = torch.Generator().manual_seed(0)
    maxB = max(batches)
    cond = torch.randn(maxB, max(native_steps, torch_steps), 208, generator=g) * 0.5
    uni = draw_uniforms(maxB, max(native_steps, torch_steps), 0)
    costs: dict[str, dict] = {}

    dense_sd = random_state_dict(0.0, seed=0)
    rtvc = RTVCStyleLoop(dense_sd)
    costs["rtvc-torch"] = {
        str(B): step_cost(lambda B, n: (lambda: rtvc(cond[:B, :n, :80], cond[:B, :n, 80:])), B, torch_steps, reps)
        for B in batches
    }

    def ref_run(B: int, n: int):
        return lambda: reference_generate(dense_sd, cond[:B, :n], uni[:B, :n])

    def native_run(model: NativeWaveRNN):
        return lambda B, n: (lambda: model.generate(cond[:B, :n], uni[:B, :n]))

    costs["torch-ref"] = {str(B): step_cost(ref_run, B, torch_steps, reps) for B in batches}
    dense_native = NativeWaveRNN(dense_sd, dense_threshold=0.0)  # the dense path
    costs["native-dense"] = {"1": step_cost(native_run(dense_native), 1, native_steps // 4, reps)}
    dense_native16 = NativeWaveRNN(dense_sd, dense_threshold=0.0, value_dtype=torch.float16)
    costs["native-dense-fp16"] = {"1": step_cost(native_run(dense_native16), 1, native_steps // 4, reps)}
    print(f"baselines done ({time.time() - t_start:.0f} s)")

    native: dict[str, dict] = {}
    sparse_only: dict[str, float] = {}
    for sp in sorted(set(sparsities) | set(extra)):
        sd = random_state_dict(sp, seed=0)
        forced_sparse = NativeWaveRNN(sd, dense_threshold=1.01)  # BSR path even when dense
        sparse_only[str(sp)] = step_cost(native_run(forced_sparse), 1, native_steps, reps)["est"]
        if sp not in sparsities:
            continue
        model = NativeWaveRNN(sd, threads=args.threads)
        n = native_steps if sp >= 0.8 else native_steps // 4
        native[str(sp)] = {
            str(B): step_cost(native_run(model), B, max(50, n // max(1, B // 4)), reps, args.threads)
            for B in batches
        }
        print(f"native {sp:.3f}: {1 / native[str(sp)]['1']['est']:.0f} samples/s single stream")

    # ---- derive the table -------------------------------------------------------------------
    def gen_time(cost_by_b: dict, seconds: float, batched: bool) -> float:
        total, steps, B = steps_and_batch(seconds)
        if not batched:
            return total * cost_by_b["1"]["est"]
        return steps * cost_by_b[str(B)]["est"]

    def threshold(times: dict[float, float]) -> float | None:
        """Shortest tested length from which every longer one is real time; 0 if all are; None if none."""
        ok = [times[s] < s for s in lengths]
        if all(ok):
            return 0.0
        for i in range(len(lengths)):
            if all(ok[i:]):
                return lengths[i]
        return None

    rows = []
    for name, cost in [("rtvc-torch", costs["rtvc-torch"]), ("torch-ref", costs["torch-ref"])]:
        for batched in (False, True):
            times = {s: gen_time(cost, s, batched) for s in lengths}
            rows.append({"loop": name, "sparsity": "any", "batched": batched, "times_s": times, "rt_threshold_s": threshold(times)})
    for sp, cost in native.items():
        for batched in (False, True):
            times = {s: gen_time(cost, s, batched) for s in lengths}
            rows.append({"loop": "native", "sparsity": float(sp), "batched": batched, "times_s": times, "rt_threshold_s": threshold(times)})

    dense_cost = costs["native-dense"]["1"]["est"]
    crossover = next((float(sp) for sp, c in sorted(sparse_only.items(), key=lambda kv: float(kv[0])) if c < dense_cost), None)
    per_core = {
        "rtvc-torch single": 1 / costs["rtvc-torch"]["1"]["est"],
        "torch-ref single": 1 / costs["torch-ref"]["1"]["est"],
        "native-dense fp32 single": 1 / dense_cost,
        "native-dense fp16 single": 1 / costs["native-dense-fp16"]["1"]["est"],
    }
    for sp, cost in native.items():
        per_core[f"native {float(sp) * 100:g}% single"] = 1 / cost["1"]["est"]
        per_core[f"native {float(sp) * 100:g}% B={maxB}"] = maxB / cost[str(maxB)]["est"] / min(args.threads, maxB)

    print("\nGeneration time (s), extrapolated from per-step cost; RT threshold = shortest length from which faster than real time")
    head = f"{'loop':<11}{'sparsity':>10}{'mode':>9} " + "".join(f"{s:>8g}s" for s in lengths) + "  threshold"
    print(head)
    for r in rows:
        sp = fmt_sparsity(r["sparsity"])
        thr = "never" if r["rt_threshold_s"] is None else f"{r['rt_threshold_s']:g} s"
        print(f"{r['loop']:<11}{sp[:10]:>10}{'folded' if r['batched'] else 'single':>9} "
              + "".join(f"{r['times_s'][s]:>9.2f}" for s in lengths) + f"  {thr}")
    print("\nsamples/s per core:")
    for k, v in per_core.items():
        print(f"  {k:<28}{v:>10.0f}")
    print("\nsparse (BSR path forced) vs dense native, single stream samples/s:")
    for sp, c in sorted(sparse_only.items(), key=lambda kv: float(kv[0])):
        print(f"  {float(sp) * 100:5.1f}%  {1 / c:>9.0f}   (dense native {1 / dense_cost:.0f})")
    cross = "none" if crossover is None else f"{crossover * 100:g}%"
    print(f"sparse/dense crossover: {cross} (first tested sparsity where BSR beats the dense path)")
    load1 = os.getloadavg()
    print(f"load average at start/end: {load0[0]:.1f} / {load1[0]:.1f} (machine shared: numbers are noisy)")

    args.out.mkdir(parents=True, exist_ok=True)
    stem = "rt_threshold_quick" if args.quick else "rt_threshold"  # a quick run never overwrites the full one
    result = {
        **run_record("rt_threshold", args.quick, load0, load1),
        "threads_batched": args.threads,
        "clock": args.clock,
        "method": "per-step cost per B measured (median of repeats; 'est' = CPU time / threads with clock=cpu, "
        "else wall median); lengths extrapolated as steps x cost(B); "
        "folding: target 8000, overlap 800 (B folds of 9600 steps; 1 fold of T steps when T <= 9600); "
        "torch loops do not skip zeros, measured once with dense weights; sample loop only",
        "step_cost_s": costs | {f"native {k}": v for k, v in native.items()},
        "sparse_path_step_cost_s": sparse_only,
        "rows": [r | {"times_s": {str(k): v for k, v in r["times_s"].items()}} for r in rows],
        "samples_per_s_per_core": per_core,
        "sparse_dense_crossover": crossover,
        "wall_s": time.time() - t_start,
    }
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=1))
    plot(rows, lengths, sparse_only, dense_cost, args.out / f"{stem}.png")
    print(f"wrote {args.out / (stem + '.json')} and {stem}.png ({time.time() - t_start:.0f} s)")


def plot(rows: list[dict], lengths: list[float], sparse_only: dict, dense_cost: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(14, 5))
    series = sorted({(r["loop"], str(r["sparsity"])) for r in rows}, key=lambda k: (k[0] != "native", k))
    cmap = plt.get_cmap("tab20", max(len(series), 2))
    for r in rows:
        label = f"{r['loop']} {fmt_sparsity(r['sparsity'])} {'folded' if r['batched'] else 'single'}"
        rtf = [r["times_s"][s] / s for s in lengths]
        color = cmap(series.index((r["loop"], str(r["sparsity"]))))
        ax1.plot(lengths, rtf, ("-" if r["batched"] else "--"), color=color, marker="o", ms=3, label=label)
    ax1.axhline(1.0, color="k", lw=0.8)
    ax1.set(xscale="log", yscale="log", xlabel="utterance length (s)", ylabel="RTF (generation time / audio time)",
            title="WaveRNN sample loop, RTVC dims, 16 kHz")
    ax1.legend(fontsize=5, ncol=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    sps = sorted(sparse_only.items(), key=lambda kv: float(kv[0]))
    ax2.plot([float(k) * 100 for k, _ in sps], [1 / v for _, v in sps], marker="o", label="native BSR 16x1 (single stream)")
    ax2.axhline(1 / dense_cost, color="r", ls="--", label="native dense fp32")
    ax2.axhline(SAMPLE_RATE, color="k", lw=0.8, label="real time (16 kHz)")
    ax2.set(yscale="log", xlabel="block sparsity (%)", ylabel="samples/s (one core)", title="sparse vs dense")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.subplots_adjust(wspace=0.55)
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
