"""Speaker-encoder speed: rtclone vs resemblyzer's VoiceEncoder, measured in the same run.

Times embedding a 5 s and a 30 s reference (already preprocessed, 16 kHz) including feature
extraction (mel) — ``rtclone.encoder.embed_utterance`` vs ``resemblyzer.VoiceEncoder.embed_utterance``
on the same weights and the same audio — and, separately, the whole path from a raw 16 kHz
array (volume normalisation + VAD trim + mel + LSTM). Runs are interleaved (ours, theirs, ours,
...) so load from other processes hits both alike. Prints median and IQR, the machine, the
cosine between the two embeddings and the speedup; writes JSON.

    python benchmarks/encoder.py [--runs 15] [--threads 1] [--json benchmarks/results/encoder.json]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch
from _common import interleaved, machine as machine_record, write_json

TEXT = ("Please call Stella. Ask her to bring these things with her from the store: six spoons of fresh "
        "snow peas, five thick slabs of blue cheese, and maybe a snack for her brother Bob. ")


def reference_speech(seconds: float, voice: str = "slt") -> np.ndarray:
    """Raw 16 kHz speech of at least ``seconds`` after preprocessing (flite; noise if flite is missing)."""
    from rtclone.audio import load_audio, preprocess_wav

    if shutil.which("flite") is None:
        rng = np.random.default_rng(0)
        return (0.1 * rng.standard_normal(int(seconds * 16000 * 1.3))).astype(np.float32)
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "ref.wav"
        text = TEXT
        while True:
            subprocess.run(["flite", "-voice", voice, "-t", text, "-o", str(out)], check=True, capture_output=True)
            raw = load_audio(out)
            if preprocess_wav(raw).size >= seconds * 16000:
                return raw
            text += TEXT


def lstm_flops(model: torch.nn.Module, n_partials: int, frames: int) -> float:
    """Multiply-add FLOPs (2 per MAC) of the encoder LSTM over ``n_partials`` windows of ``frames``."""
    lstm = model.lstm
    per_step = sum(2 * 4 * lstm.hidden_size * (getattr(lstm, f"weight_ih_l{k}").shape[1] + lstm.hidden_size)
                   for k in range(lstm.num_layers))  # fmt: skip
    return float(per_step * n_partials * frames)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15, help="timed runs per case (>= 10)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for both encoders (the machine is shared)")
    ap.add_argument("--seconds", type=float, nargs="+", default=[5.0, 30.0], help="reference durations")
    ap.add_argument("--json", default="benchmarks/results/encoder.json", help="where to write the JSON results")
    args = ap.parse_args()
    if args.runs < 10:
        ap.error("--runs must be >= 10")
    torch.set_num_threads(args.threads)

    import resemblyzer

    from rtclone.audio import preprocess_wav
    from rtclone.checkpoints import load_encoder
    from rtclone.audio import encoder_mel
    from rtclone.encoder import EmbedOptions, compute_partial_slices, embed_partials, embed_utterance, utterance_partials

    ours = load_encoder()
    theirs = resemblyzer.VoiceEncoder("cpu", verbose=False)
    raw_full = reference_speech(max(args.seconds))
    full = preprocess_wav(raw_full)

    machine = machine_record(torch_threads=torch.get_num_threads(), load_avg_1m=os.getloadavg()[0])
    print(f"machine: {machine['cpu']}, {machine['cores']} cores, torch {machine['torch']} with {machine['torch_threads']} "
          f"thread(s), load average {machine['load_avg_1m']:.2f}")
    results = []
    for seconds in args.seconds:
        n = int(seconds * 16000)
        wav = full[:n]  # preprocessed speech, exactly `seconds` long
        raw = raw_full[: int(n * raw_full.size / full.size) + 1]  # raw audio that trims to about that much
        cos = float(embed_utterance(ours, wav) @ theirs.embed_utterance(wav))
        padded = np.pad(wav, (0, max(0, compute_partial_slices(wav.size, EmbedOptions())[0][-1].stop - wav.size)))
        mels, _ = utterance_partials(wav)  # (N, 160, 40)
        a = torch.randn(1024, 1024)
        s = interleaved({
            "sgemm_1024": lambda: a @ a,  # the machine's practical fp32 rate, in the same run
            "rtclone_mel_only": lambda: encoder_mel(padded),
            "rtclone_lstm_only": lambda: embed_partials(ours, mels),
            "rtclone": lambda: embed_utterance(ours, wav),
            "resemblyzer": lambda: theirs.embed_utterance(wav),
            "rtclone_from_raw": lambda: embed_utterance(ours, preprocess_wav(raw)),
            "resemblyzer_from_raw": lambda: theirs.embed_utterance(resemblyzer.preprocess_wav(raw)),
        }, args.runs)
        row = {"seconds": seconds, "cosine": cos, "n_partials": int(mels.shape[0]), **s,
               "speedup": s["resemblyzer"]["median_ms"] / s["rtclone"]["median_ms"],
               "speedup_from_raw": s["resemblyzer_from_raw"]["median_ms"] / s["rtclone_from_raw"]["median_ms"],
               "speedup_cpu_time": s["resemblyzer"]["cpu_median_ms"] / s["rtclone"]["cpu_median_ms"]}
        # Ceiling with the same fp32 arithmetic: the LSTM's FLOPs at the best rate this core reached
        # (a large sgemm) and a free front-end. Past this, "faster with the same embeddings" needs
        # fewer FLOPs (it cannot: every partial's recurrence depends on its own start).
        # CPU-time figures too: on a shared machine they are what the process itself got.
        flops = lstm_flops(ours, mels.shape[0], mels.shape[1])
        row["lstm_gflop"] = flops / 1e9
        for tag, key in (("", "median_ms"), ("_cpu_time", "cpu_median_ms")):
            sgemm = 2 * 1024**3 / s["sgemm_1024"][key] / 1e6
            row[f"sgemm_gflops{tag}"] = sgemm
            row[f"lstm_gflops{tag}"] = flops / s["rtclone_lstm_only"][key] / 1e6
            row[f"speedup_ceiling{tag}"] = s["resemblyzer"][key] / (flops / sgemm / 1e6)
        results.append(row)
        print(f"{seconds:5.1f} s reference, {mels.shape[0]} partials (cosine ours vs resemblyzer {cos:.6f}):")
        for k, v in s.items():
            print(f"    {k:22s} wall median {v['median_ms']:8.2f} ms  IQR {v['iqr_ms']:6.2f} ms | "
                  f"CPU median {v['cpu_median_ms']:8.2f} ms  IQR {v['cpu_iqr_ms']:6.2f} ms  ({v['runs']} runs)")
        print(f"    LSTM {row['lstm_gflop']:.2f} GFLOP at {row['lstm_gflops']:.1f} GFLOP/s wall / {row['lstm_gflops_cpu_time']:.1f} CPU; "
              f"sgemm 1024 reaches {row['sgemm_gflops']:.1f} / {row['sgemm_gflops_cpu_time']:.1f} here -> ceiling for the same fp32 "
              f"maths with a free front-end: {row['speedup_ceiling']:.2f}x wall, {row['speedup_ceiling_cpu_time']:.2f}x CPU time")
        print(f"    speedup vs resemblyzer: embed incl. mel {row['speedup']:.2f}x (CPU time {row['speedup_cpu_time']:.2f}x), "
              f"from raw incl. VAD {row['speedup_from_raw']:.2f}x")

    write_json(args.json, {"benchmark": "encoder", "machine": machine, "runs": args.runs, "results": results})


if __name__ == "__main__":
    main()
