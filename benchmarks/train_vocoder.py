"""What does a WaveRNN training step cost on this CPU: float32, bfloat16 autocast, and the C GRU?

One training step as ``rtclone.train.vocoder`` takes it (teacher-forced pass, RAW cross-entropy,
backward, Adam) on random data of the same shapes: ``--batch`` segments of ``--hops`` x 200
samples, one torch thread, for the default run's dims (rnn = fc = 256) and RTVC's (512). Modes:
``float32`` and ``bf16`` (``train_vocoder(bf16=True)``, ``--bf16``: the passes under CPU autocast;
weights, Adam and the loss in float32) run the GRUs as torch.nn.GRU (``RTCLONE_FUSED_GRU=0``), the
baselines; ``bf16_fused_gru`` runs them in rtclone.kernels.cpu.gru (what training uses when the
extension is built). Modes are interleaved (a, b, c, a, b, c, ...) so background load hits them
alike. Prints and writes the median and IQR of the step time, training samples per second and the
ratios, with the machine (and whether it has AVX512-BF16) and the C paths in use.

    python benchmarks/train_vocoder.py [--runs 5] [--batch 16] [--hops 5] [--dims 256,512] [--quick]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch
from _common import interleaved, run_record, write_json

from rtclone.kernels.cpu.gru import kernels as gru_kernels
from rtclone.train.vocoder import vocoder_loss
from rtclone.vocoder import VocoderDims, WaveRNN

ROOT = Path(__file__).resolve().parent.parent
MODES = ("float32", "bf16", "bf16_fused_gru")


def step_fn(rnn_dims: int, batch: int, hops: int, bf16: bool, fused_gru: bool = False):
    """A closure taking one training step of a fresh seeded WaveRNN on fixed random data."""
    torch.manual_seed(0)
    model = WaveRNN(VocoderDims(rnn_dims=rnn_dims, fc_dims=rnn_dims)).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(batch, hops * 200, generator=g) * 2 - 1
    mels = torch.randn(batch, 80, hops + 2 * model.dims.pad, generator=g)
    y = torch.randint(0, 512, (batch, hops * 200), generator=g)

    def step() -> None:
        os.environ["RTCLONE_FUSED_GRU"] = "1" if fused_gru else "0"
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = vocoder_loss(model, x, mels, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def has_avx512_bf16() -> bool:
    try:
        return "avx512_bf16" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--hops", type=int, default=5)
    ap.add_argument("--dims", default="256,512")
    ap.add_argument("--quick", action="store_true", help="2 runs, batch 4: a smoke run")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args()
    runs, batch = (2, 4) if args.quick else (args.runs, args.batch)
    torch.set_num_threads(1)
    load0 = os.getloadavg()
    rows = {}
    for dims in (int(d) for d in args.dims.split(",")):
        fns = {mode: step_fn(dims, batch, args.hops, mode != "float32", mode == "bf16_fused_gru") for mode in MODES}
        stats = interleaved(fns, runs, warmup=1 if args.quick else 2)
        samples = batch * args.hops * 200
        for mode, s in stats.items():
            s["samples_per_s"] = samples / (s["median_ms"] / 1000.0)
        ratio = stats["bf16"]["median_ms"] / stats["float32"]["median_ms"]
        fused = stats["bf16_fused_gru"]["median_ms"] / stats["bf16"]["median_ms"]
        rows[str(dims)] = {"modes": stats, "bf16_over_float32": ratio, "fused_gru_over_bf16": fused}
        for mode, s in stats.items():
            print(f"rnn = fc = {dims:>3}  {mode:<14} step {s['median_ms']:7.0f} ms (IQR {s['iqr_ms']:4.0f})  "
                  f"{s['samples_per_s']:7.0f} samples/s")
        print(f"rnn = fc = {dims:>3}  step time bf16 / float32: {ratio:.2f}, bf16 with the C GRU / bf16: {fused:.2f}")
    record = run_record("train_vocoder", args.quick, load0, os.getloadavg())
    record["machine"]["avx512_bf16"] = has_avx512_bf16()
    record["gru_kernel"] = gru_kernels()
    record.update({"batch": batch, "samples_per_segment": args.hops * 200, "threads": 1, "dims": rows})
    print(f"machine: {record['machine']}")
    write_json(Path(args.out) / f"train_vocoder{'_quick' if args.quick else ''}.json", record)


if __name__ == "__main__":
    main()
