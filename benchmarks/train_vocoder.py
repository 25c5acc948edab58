"""What does a WaveRNN training step cost on this CPU, in float32 and under bfloat16 autocast?

One training step as ``rtclone.train.vocoder`` takes it (teacher-forced pass, RAW cross-entropy,
backward, Adam) on random data of the same shapes: ``--batch`` segments of ``--hops`` x 200
samples, one torch thread, for the default run's dims (rnn = fc = 256) and RTVC's (512). float32 is
the baseline; bf16 is ``train_vocoder(bf16=True)`` (``--bf16``: the passes under CPU autocast, the
weights, Adam and the loss in float32). Modes are interleaved (a, b, a, b, ...) so background load
hits them alike. Prints and writes the median and IQR of the step time, training samples per
second and the bf16 / float32 ratio, with the machine (and whether it has AVX512-BF16).

    python benchmarks/train_vocoder.py [--runs 5] [--batch 16] [--hops 5] [--dims 256,512] [--quick]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch
from _common import interleaved, run_record, write_json

from rtclone.train.vocoder import vocoder_loss
from rtclone.vocoder import VocoderDims, WaveRNN

ROOT = Path(__file__).resolve().parent.parent


def step_fn(rnn_dims: int, batch: int, hops: int, bf16: bool):
    """A closure taking one training step of a fresh seeded WaveRNN on fixed random data."""
    torch.manual_seed(0)
    model = WaveRNN(VocoderDims(rnn_dims=rnn_dims, fc_dims=rnn_dims)).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(batch, hops * 200, generator=g) * 2 - 1
    mels = torch.randn(batch, 80, hops + 2 * model.dims.pad, generator=g)
    y = torch.randint(0, 512, (batch, hops * 200), generator=g)

    def step() -> None:
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
        fns = {mode: step_fn(dims, batch, args.hops, mode == "bf16") for mode in ("float32", "bf16")}
        stats = interleaved(fns, runs, warmup=1 if args.quick else 2)
        samples = batch * args.hops * 200
        for mode, s in stats.items():
            s["samples_per_s"] = samples / (s["median_ms"] / 1000.0)
        ratio = stats["bf16"]["median_ms"] / stats["float32"]["median_ms"]
        rows[str(dims)] = {"modes": stats, "bf16_over_float32": ratio}
        for mode, s in stats.items():
            print(f"rnn = fc = {dims:>3}  {mode:<8} step {s['median_ms']:7.0f} ms (IQR {s['iqr_ms']:4.0f})  "
                  f"{s['samples_per_s']:7.0f} samples/s")
        print(f"rnn = fc = {dims:>3}  bf16 / float32 step time: {ratio:.2f}")
    record = run_record("train_vocoder", args.quick, load0, os.getloadavg())
    record["machine"]["avx512_bf16"] = has_avx512_bf16()
    record.update({"batch": batch, "samples_per_segment": args.hops * 200, "threads": 1, "dims": rows})
    print(f"machine: {record['machine']}")
    write_json(Path(args.out) / f"train_vocoder{'_quick' if args.quick else ''}.json", record)


if __name__ == "__main__":
    main()
