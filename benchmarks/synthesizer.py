"""Synthesizer speed: mel frames per second and time to the first streamed mel chunk.

Measures the shipped synthesizer's dims (``rtclone/models``: small dims with 768-wide decoder LSTMs;
the engine decodes it with int8 weights by default), ``SynthesizerDims.small()`` and RTVC's dims
(the baseline, measured in the same run), each also with the int8 decoder (``quantize_decoder_int8``), on this
CPU, with random seeded weights (speed does not depend on the values: decoding is free-running to
a fixed length with the stop token off).

Goal (issue 3): default dims ≥ 400 frames/s (5× real time at 80 frames/s) and first chunk ≤ 60 ms.

    .venv/bin/python benchmarks/synthesizer.py [--repeats 5] [--frames 200] [--threads 1] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from _common import machine, write_json

from rtclone.synthesizer import (StreamInfo, SynthesizerDims, Tacotron, TacotronOptions, quantize_decoder_int8, stream,
                                 synthesize)

TEXT = "The birch canoe slid on the smooth planks, glue the sheet to the dark blue background."
FIRST_TEXT = "The birch canoe slid on the"  # a 6-word text (the pipeline cut its first chunk there until session 6)
FRAMES_PER_SECOND_OF_AUDIO = 80  # hop 200 at 16 kHz


def _summary(xs: list[float]) -> dict[str, float]:
    q = np.percentile(xs, [25, 75])
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "iqr": float(q[1] - q[0])}


def measure(name: str, dims: SynthesizerDims, frames: int, repeats: int, r: int, int8: bool = False) -> dict:
    torch.manual_seed(0)
    model = Tacotron(dims).eval()
    model.set_r(r)
    n_params = sum(p.numel() for p in model.parameters())
    if int8:
        model = quantize_decoder_int8(model)
    emb = np.random.default_rng(0).standard_normal(dims.speaker_embedding_size).astype(np.float32)
    emb /= np.linalg.norm(emb)
    opts = TacotronOptions(stop_threshold=None, detect_attention_failure=False, on_max_length="truncate",
                           max_decoder_steps=frames // r)
    synthesize(model, [TEXT], emb[None], TacotronOptions(stop_threshold=None, detect_attention_failure=False,
                                                         on_max_length="truncate", max_decoder_steps=5))  # warm-up
    offline_fps, stream_fps, first_ms, first_short_ms = [], [], [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        mel = synthesize(model, [TEXT], emb[None], opts)[0][0]
        offline_fps.append(mel.shape[1] / (time.perf_counter() - t0))
        info = StreamInfo()
        t0 = time.perf_counter()
        first = None
        n = 0
        for chunk in stream(model, TEXT, emb, opts, info):
            if first is None:
                first = time.perf_counter() - t0
            n += chunk.shape[1]
        stream_fps.append(n / (time.perf_counter() - t0))
        first_ms.append(first * 1e3)
        t0 = time.perf_counter()
        it = stream(model, FIRST_TEXT, emb, opts)
        next(it)
        first_short_ms.append((time.perf_counter() - t0) * 1e3)
        it.close()
    res = {
        "name": name, "dims": dims.__dict__, "r": r, "frames": frames, "int8_decoder": int8,
        "params_M": n_params / 1e6,
        "offline_frames_per_s": _summary(offline_fps),
        "stream_frames_per_s": _summary(stream_fps),
        "first_chunk_ms": _summary(first_ms),
        "first_chunk_ms_6_words": _summary(first_short_ms),
        "first_chunk_frames": opts.first_chunk, "chunk_frames": opts.postnet_chunk, "lookahead_frames": info.lookahead_frames,
    }
    res["x_real_time"] = res["stream_frames_per_s"]["median"] / FRAMES_PER_SECOND_OF_AUDIO
    return res


def _shipped_dims() -> list[SynthesizerDims]:
    """The dims of the synthesizer shipped in rtclone/models (none when it is missing)."""
    from rtclone.checkpoints import describe
    from rtclone.pipeline import DEFAULT_MODELS_DIR

    path = DEFAULT_MODELS_DIR / "synthesizer.pt"
    return [SynthesizerDims(**describe(path)["dims"])] if path.is_file() else []


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--frames", type=int, default=200, help="mel frames decoded per run (2.5 s of audio)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--r", type=int, default=2, help="reduction factor (RTVC's trained models use 2)")
    p.add_argument("--out", default=str(Path(__file__).with_name("results") / "synthesizer.json"))
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    shipped = [measure(f"shipped dims{name}", dims, a.frames, a.repeats, a.r, int8=q)
               for dims in _shipped_dims() for name, q in ((" (float32)", False), (" int8 decoder (default)", True))]
    results = [*shipped, measure("rtclone-small", SynthesizerDims.small(), a.frames, a.repeats, a.r),
               measure("rtclone-small int8 decoder", SynthesizerDims.small(), a.frames, a.repeats, a.r, int8=True),
               measure("rtvc (baseline)", SynthesizerDims(), a.frames, a.repeats, a.r),
               measure("rtvc int8 decoder", SynthesizerDims(), a.frames, a.repeats, a.r, int8=True)]
    report = {
        "benchmark": "synthesizer", "machine": machine(threads=a.threads, load_avg_1m=os.getloadavg()[0]),
        "text": TEXT, "first_text": FIRST_TEXT, "goal": {"frames_per_s": 400, "first_chunk_ms": 60}, "results": results,
    }
    for r in results:
        print(f"{r['name']:<36} {r['params_M']:6.2f} M  stream {r['stream_frames_per_s']['median']:7.1f} frames/s "
              f"[{r['stream_frames_per_s']['min']:.0f}-{r['stream_frames_per_s']['max']:.0f}] "
              f"({r['x_real_time']:.1f}x real time)  offline {r['offline_frames_per_s']['median']:7.1f}  "
              f"first chunk {r['first_chunk_ms']['median']:6.1f} ms [{r['first_chunk_ms']['min']:.1f}-{r['first_chunk_ms']['max']:.1f}] "
              f"(6-word text: {r['first_chunk_ms_6_words']['median']:.1f} ms)")
    print(f"machine: {report['machine']}")
    write_json(a.out, report, indent=1)


if __name__ == "__main__":
    main()
