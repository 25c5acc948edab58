"""Exported-artifact speed: torch vs onnxruntime vs TorchScript on this CPU, measured in one run.

Two latencies a server pays per request / per step:
- encoder embedding: the pretrained GE2E encoder (resemblyzer's weights) on a batch of partial
  mels (N, 160, 40) (``--partials``, default 5 ≈ a 4 s reference), and
- synthesizer decoder step: one Tacotron decoder step (batch 1, ``--text-len`` symbols) with
  rtclone's default dims (``SynthesizerDims.small()``, random weights: speed does not depend on
  them) and RTVC's dims (``SynthesizerDims()``), including the prenet-mask draw on every path.

The torch baseline calls the modules directly (``model(...)``, ``decoder.step``); the exported
paths go through :mod:`rtclone.runners` (numpy in/out), which is what ``--models DIR`` serving
runs. The decoder step also times rtclone's int8-weight torch decoder (``quantize_decoder_int8``,
not exportable; its "error" is the quantization error, not parity). Runs are interleaved (torch,
onnx, torchscript, torch, ...) so load from other processes hits all alike. One thread everywhere. Prints median and IQR (ms) of wall and process-CPU time, parity
(max abs error vs torch) and the machine; writes JSON.

    python benchmarks/export.py [--runs 30] [--json benchmarks/results/export.json]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from _common import interleaved, machine, write_json


def _encoder_case(tmp: Path, partials: int, runs: int) -> dict:
    from rtclone.checkpoints import load_encoder
    from rtclone.export import export_models
    from rtclone.runners import OnnxRunner, TorchScriptRunner

    enc = load_encoder()
    ort_dir, ts_dir = tmp / "enc_onnx", tmp / "enc_ts"
    export_models(ort_dir, encoder=enc, format="onnx")
    export_models(ts_dir, encoder=enc, format="torchscript")
    ort_run, ts_run = OnnxRunner(ort_dir, threads=1), TorchScriptRunner(ts_dir)
    mels = np.random.default_rng(0).random((partials, 160, 40), dtype=np.float32)  # (N, 160, 40)
    x = torch.from_numpy(mels)

    def torch_fn() -> np.ndarray:
        with torch.inference_mode():
            return enc(x).numpy()

    fns = {"torch": torch_fn, "onnxruntime": lambda: ort_run.embed_mels(mels), "torchscript": lambda: ts_run.embed_mels(mels)}
    ref = torch_fn()
    parity = {k: float(np.abs(f() - ref).max()) for k, f in fns.items() if k != "torch"}
    return {"input": f"({partials}, 160, 40) partial mels", "latency": interleaved(fns, runs, warmup=3),
            "max_abs_err_vs_torch": parity}


def _decoder_case(tmp: Path, name: str, dims, text_len: int, runs: int) -> dict:
    from rtclone.export import export_models
    from rtclone.runners import OnnxRunner, TorchScriptRunner
    from rtclone.synthesizer import Tacotron, quantize_decoder_int8

    torch.manual_seed(0)
    syn = Tacotron(dims).eval()
    ort_dir, ts_dir = tmp / f"{name}_onnx", tmp / f"{name}_ts"
    export_models(ort_dir, encoder=None, synthesizer=syn, format="onnx")
    export_models(ts_dir, encoder=None, synthesizer=syn, format="torchscript")
    ort_run, ts_run = OnnxRunner(ort_dir, threads=1), TorchScriptRunner(ts_dir)
    chars = torch.randint(1, dims.num_chars, (1, text_len))
    spk = torch.nn.functional.normalize(torch.randn(1, dims.speaker_embedding_size), dim=1)
    with torch.inference_mode():
        memory, keys = syn.encode(chars, spk, torch.Generator().manual_seed(0))
    dec, r = syn.decoder, syn.r
    mel_w = dec.mel_weight(r).contiguous()
    state0 = dec.init_state(memory)
    mem_np, keys_np, mask_np = memory.numpy(), keys.numpy(), np.ones((1, text_len), bool)
    np_state0 = ort_run.initial_state(mem_np)

    def torch_fn() -> np.ndarray:
        with torch.inference_mode():
            return dec.step(state0, memory, keys, None, r, torch.Generator().manual_seed(1), mel_w)[0].numpy()

    def runner_fn(run) -> np.ndarray:
        return run.decoder_step(np_state0, mem_np, keys_np, mask_np, torch.Generator().manual_seed(1))[0]

    # a peer measured in the same run: the torch decoder with int8 weights (not exportable; quantization error)
    qdec = quantize_decoder_int8(syn).decoder

    def int8_fn() -> np.ndarray:
        with torch.inference_mode():
            return qdec.step(state0, memory, keys, None, r, torch.Generator().manual_seed(1))[0].numpy()

    fns = {"torch": torch_fn, "onnxruntime": lambda: runner_fn(ort_run), "torchscript": lambda: runner_fn(ts_run),
           "torch_int8": int8_fn}
    ref = torch_fn()
    parity = {k: float(np.abs(f() - ref).max()) for k, f in fns.items() if k != "torch"}
    return {"dims": name, "r": r, "text_len": text_len, "lstm_dims": dims.lstm_dims,
            "latency": interleaved(fns, runs, warmup=3), "max_abs_err_vs_torch": parity}


def main() -> None:
    from rtclone.synthesizer import SynthesizerDims

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=30, help="timed runs per path (>= 20)")
    ap.add_argument("--partials", type=int, default=5, help="partial utterances per encoder call")
    ap.add_argument("--text-len", type=int, default=60, help="symbols in the text the decoder attends over")
    ap.add_argument("--json", default=str(Path(__file__).parent / "results" / "export.json"))
    args = ap.parse_args()
    if args.runs < 20:
        ap.error("--runs must be >= 20")
    torch.set_num_threads(1)
    import onnxruntime

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        result = {
            "machine": machine(onnxruntime=onnxruntime.__version__, threads=1, loadavg_at_start=list(os.getloadavg())),
            "encoder_embedding": _encoder_case(tmp, args.partials, args.runs),
            "decoder_step": [_decoder_case(tmp, "small", SynthesizerDims.small(), args.text_len, args.runs),
                             _decoder_case(tmp, "rtvc", SynthesizerDims(), args.text_len, args.runs)],
        }
    result["machine"]["loadavg_at_end"] = list(os.getloadavg())
    m = result["machine"]
    print(f"{m['cpu']} ({m['cores']} cores, load {m['loadavg_at_start'][0]:.1f}), torch {m['torch']}, "
          f"onnxruntime {m['onnxruntime']}, 1 thread, {args.runs} interleaved runs; median ms [IQR] wall / cpu")
    cases = [("encoder " + result["encoder_embedding"]["input"], result["encoder_embedding"])]
    cases += [(f"decoder step ({c['dims']}, r={c['r']}, {c['text_len']} symbols)", c) for c in result["decoder_step"]]
    for title, case in cases:
        row = "  ".join(f"{k} {v['median_ms']:.2f} [{v['iqr_ms']:.2f}] / {v['cpu_median_ms']:.2f} [{v['cpu_iqr_ms']:.2f}]"
                        for k, v in case["latency"].items())
        err = ", ".join(f"{k} {v:.1e}" for k, v in case["max_abs_err_vs_torch"].items())
        print(f"{title}: {row}  (max abs err {err})")
    write_json(args.json, result)


if __name__ == "__main__":
    main()
