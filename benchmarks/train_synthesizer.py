"""What does a synthesizer training step cost on this CPU: the decoder's step loop, the split decoder, the C LSTM layer?

One training step as ``rtclone.train.synthesizer`` takes it (teacher-forced pass, RTVC's loss plus
the guided-attention term, backward, gradient clipping, Adam) on random data of the corpus's typical
shapes (``--batch`` utterances of ``--chars`` symbols and ``--frames`` mel frames, r = 4), one torch
thread, for the default dims (decoder LSTMs 384 wide) and the widened line (768). Modes:
``step_loop`` (``Tacotron.split_decoder = False``: one LSTM-cell call per decoder step, the
reference), ``split`` (``Decoder.teacher_forced``: the attention path step by step, then the
residual LSTMs and projections over the whole sequence, in torch's LSTM), ``split_c`` (the same with
the LSTMs in rtclone.kernels.cpu.gru.lstm_layer, float32; what training uses when the extension is
built) and ``split_c_bf16`` (its products on bfloat16 operands: ``--bf16-lstm``), all four with the
attention path under autograd (``RTCLONE_FUSED_ATTENTION=0``), and ``split_c_bf16_attn``: that with the
attention path in rtclone.attention_train (the prenet in two products, a hand-written backward; what
training uses now); ``own_sequential`` and ``own_parallel``: scheduled sampling at probability 0.5
(``--own-frames 0.5``), the step loop feeding back its own frames (the C LSTM layer, bf16, fused attention
where they apply) and ``split_c_bf16_attn`` with a first teacher-forced pass giving the own frames
(``--own-parallel``). Modes are
interleaved so background load hits them alike. Prints and writes the median and IQR of the step
time and each mode's ratio to the step loop, with the machine.

    python benchmarks/train_synthesizer.py [--runs 5] [--batch 16] [--chars 60] [--frames 264] [--lstm 384,768] [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

import torch
from _common import interleaved, run_record, write_json

from rtclone.kernels.cpu import gru as fused
from rtclone.synthesizer import SynthesizerDims, Tacotron
from rtclone.train.synthesizer import taco_loss

ROOT = Path(__file__).resolve().parent.parent
MODES = ("step_loop", "split", "split_c", "split_c_bf16", "split_c_bf16_attn", "own_sequential", "own_parallel")


def step_fn(lstm: int, batch: int, chars: int, frames: int, mode: str):
    """A closure taking one training step of a fresh seeded Tacotron on fixed random data."""
    torch.manual_seed(0)
    model = Tacotron(dataclasses.replace(SynthesizerDims.small(), lstm_dims=lstm)).train()
    model.set_r(4)
    own = mode.startswith("own_")
    model.split_decoder = mode != "step_loop"
    model.decoder.lstm_bf16 = mode.startswith("split_c_bf16") or own
    fused_lstm = "1" if mode.startswith("split_c") or own else "0"
    fused_attention = "1" if mode.endswith("_attn") or own else "0"
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(1)
    text_lens = torch.randint(chars // 2, chars + 1, (batch,), generator=g)
    text_lens[0] = chars
    mel_lens = torch.randint(frames // 2, frames + 1, (batch,), generator=g)
    mel_lens[0] = frames
    ids = torch.randint(1, model.dims.num_chars, (batch, chars), generator=g)
    ids[torch.arange(chars)[None, :] >= text_lens[:, None]] = 0
    mels = (torch.randn(batch, model.dims.n_mels, frames, generator=g) * 2).clamp(-4, 4)
    stop = (torch.arange(frames)[None, :] >= mel_lens[:, None] - 1).float()
    embeds = torch.nn.functional.normalize(torch.randn(batch, 256, generator=g), dim=1)
    data = {"chars": ids, "mels": mels, "stop": stop, "embeds": embeds, "text_lens": text_lens, "mel_lens": mel_lens}

    def step() -> None:
        os.environ["RTCLONE_FUSED_LSTM"] = fused_lstm
        os.environ["RTCLONE_FUSED_ATTENTION"] = fused_attention
        loss, _, _ = taco_loss(model, data, 2.0, own_frames=0.5 if own else 0.0, own_parallel=mode == "own_parallel")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--chars", type=int, default=60)
    ap.add_argument("--frames", type=int, default=264)
    ap.add_argument("--lstm", default="384,768")
    ap.add_argument("--quick", action="store_true", help="2 runs, batch 4, 80 frames: a smoke run")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args()
    runs, batch, frames = (2, 4, 80) if args.quick else (args.runs, args.batch, args.frames)
    torch.set_num_threads(1)
    load0 = os.getloadavg()
    rows = {}
    for lstm in (int(d) for d in args.lstm.split(",")):
        modes = [m for m in MODES if fused.lstm_available() or not m.startswith("split_c")]
        stats = interleaved({mode: step_fn(lstm, batch, args.chars, frames, mode) for mode in modes}, runs, warmup=1)
        base = stats["step_loop"]["median_ms"]
        rows[str(lstm)] = {"modes": stats, "over_step_loop": {m: s["median_ms"] / base for m, s in stats.items()}}
        for mode, s in stats.items():
            print(f"decoder LSTMs {lstm:>3} wide  {mode:<17} step {s['median_ms']:7.0f} ms (IQR {s['iqr_ms']:4.0f})"
                  f"  {s['median_ms'] / base:.2f} of the step loop")
    record = run_record("train_synthesizer", args.quick, load0, os.getloadavg())
    record.update({"batch": batch, "chars": args.chars, "frames": frames, "r": 4, "threads": 1, "lstm": rows})
    print(f"machine: {record['machine']}")
    write_json(Path(args.out) / f"train_synthesizer{'_quick' if args.quick else ''}.json", record)


if __name__ == "__main__":
    main()
