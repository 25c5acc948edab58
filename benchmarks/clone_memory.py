"""Peak memory and speed of `rtclone clone` on long texts: streamed to the file vs held in memory.

`rtclone clone` writes each chunk to the wav as it is made (session 27); the baseline, measured in the
same run, is the path it replaced: `Cloner.clone` collects the whole clip, then `save_wav` writes it.
Each run is a fresh process (one torch thread, the shipped default models, a voice file so the encoder
is not timed) that reports its own peak resident memory (`ru_maxrss`); the two paths alternate per text
length. Prints median and spread (min–max) of peak memory and of wall time per length, the machine,
and writes JSON.

    python benchmarks/clone_memory.py [--chars 300,5000,20000] [--runs 2] [--json benchmarks/results/clone_memory.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import machine, write_json

PARAGRAPH = ("The old ferry crossed the river every morning with a load of apples, bread and letters. "
             "On the far bank the children waited by the fountain, and the baker counted his coins twice. ")

# one process per run: the job, then its own peak resident memory (KiB on Linux) as the last line
STREAMED = """
import resource, sys, torch
torch.set_num_threads(1)
from rtclone.cli import main
status = main(["clone", "--ref", sys.argv[1], "-o", sys.argv[2], "--json"] + ["--text", open(sys.argv[3]).read()])
assert status == 0, status
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""
IN_MEMORY = """
import resource, sys, torch
torch.set_num_threads(1)
from rtclone.audio import save_wav
from rtclone.pipeline import Cloner, SynthesisOptions
text = open(sys.argv[3]).read()
cloner = Cloner.from_default()
result = cloner.clone(text, cloner.voice(sys.argv[1]), SynthesisOptions(max_chars=max(5000, len(text))))
save_wav(sys.argv[2], result.audio, result.sample_rate)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def _run(code: str, voice: Path, out: Path, text_file: Path) -> tuple[float, float, float]:
    """(peak MiB, wall s, audio s) of one fresh process."""
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", code, str(voice), str(out), str(text_file)], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"run failed: {r.stderr[-2000:]}")
    import soundfile as sf

    return int(r.stdout.strip().splitlines()[-1]) / 1024.0, wall, sf.info(str(out)).duration


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chars", default="300,5000,20000", help="text lengths, comma-separated")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--json", default="benchmarks/results/clone_memory.json")
    a = ap.parse_args()
    lengths = [int(c) for c in a.chars.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        subprocess.run(["flite", "-voice", "slt", "-t", PARAGRAPH, "-o", str(tmp / "ref.wav")], check=True)
        subprocess.run([sys.executable, "-m", "rtclone.cli", "embed", str(tmp / "ref.wav"), "-o", str(tmp / "ref.voice")],
                       check=True, capture_output=True)  # fmt: skip
        rows = []
        for n in lengths:
            text = (PARAGRAPH * (n // len(PARAGRAPH) + 1))[:n].rsplit(" ", 1)[0] + "."
            (tmp / "text.txt").write_text(text)
            got: dict[str, list[tuple[float, float, float]]] = {"streamed": [], "in_memory": []}
            for _ in range(a.runs):
                for name, code in (("streamed", STREAMED), ("in_memory", IN_MEMORY)):
                    got[name].append(_run(code, tmp / "ref.voice", tmp / f"{name}.wav", tmp / "text.txt"))
            row = {"chars": len(text)}
            for name, runs in got.items():
                mib, wall, audio_s = (np.array(x) for x in zip(*runs))
                row[name] = {"peak_mib_median": float(np.median(mib)), "peak_mib_min": float(mib.min()), "peak_mib_max": float(mib.max()),
                             "wall_s_median": float(np.median(wall)), "wall_s_min": float(wall.min()), "wall_s_max": float(wall.max()),
                             "audio_s": float(audio_s[0]), "runs": len(runs)}  # fmt: skip
            rows.append(row)
            s, m = row["streamed"], row["in_memory"]
            print(f"{row['chars']:>6} chars, {s['audio_s']:7.1f} s of audio: peak memory streamed {s['peak_mib_median']:.0f} MiB "
                  f"({s['peak_mib_min']:.0f}–{s['peak_mib_max']:.0f}), in memory {m['peak_mib_median']:.0f} MiB "
                  f"({m['peak_mib_min']:.0f}–{m['peak_mib_max']:.0f}); wall {s['wall_s_median']:.1f} s vs {m['wall_s_median']:.1f} s",
                  flush=True)  # fmt: skip
    record = {"benchmark": "clone_memory", "machine": machine(threads=1), "runs": a.runs, "rows": rows,
              "note": "peak resident memory of a fresh process (ru_maxrss), shipped default models, one torch thread"}
    print(json.dumps(record["machine"]))
    write_json(a.json, record)


if __name__ == "__main__":
    main()
