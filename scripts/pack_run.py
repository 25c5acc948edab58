"""Copy a synthesizer training run into a folder to commit, and back.

    python scripts/pack_run.py runs/synth-wide training/synth-wide            # pack
    python scripts/pack_run.py --unpack training/synth-wide runs/synth-wide   # unpack

Packing copies ``log.jsonl`` and the newest alignment PNG, writes ``optimizer.pt`` with Adam's
moment tensors in bfloat16 (half the bytes; on resume ``Optimizer.load_state_dict`` casts them
back to the parameters' float32; bfloat16 keeps float32's exponent range, so the tiny second
moments do not underflow as they would in float16), and cuts every file above ``--part-mib``
(default 32) into byte ranges ``NAME.part-00``, ``NAME.part-01``… listed with their SHA-256 in
``parts.json``, so that no committed file is large. Unpacking joins the parts, checks each whole
file's SHA-256 and copies the rest: the result is the run directory the trainer resumes.
Checkpoints are committed so a later session, on a fresh machine, can resume the run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

import torch

PARTS = "parts.json"


def pack_optimizer(src: Path, dst: Path) -> int:
    """Write ``src`` (a trainer's optimizer.pt) to ``dst`` with float32 moments as bfloat16; returns bytes."""
    saved = torch.load(src, map_location="cpu", weights_only=True)
    for state in saved["optimizer"]["state"].values():
        for key, v in state.items():
            if key != "step" and torch.is_tensor(v) and v.dtype == torch.float32:
                state[key] = v.to(torch.bfloat16)
    tmp = dst.with_name(dst.name + ".tmp")
    torch.save(saved, tmp)
    tmp.replace(dst)
    return dst.stat().st_size


def _split(path: Path, part_bytes: int) -> dict:
    """Cut ``path`` into ``path.part-NN`` files of at most ``part_bytes``; remove it; describe it."""
    data = path.read_bytes()
    names = []
    for k, start in enumerate(range(0, len(data), part_bytes)):
        part = path.with_name(f"{path.name}.part-{k:02d}")
        part.write_bytes(data[start:start + part_bytes])
        names.append(part.name)
    path.unlink()
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(), "parts": names}


def pack_run(src: Path, dst: Path, part_mib: float = 32.0) -> dict:
    """Copy run ``src`` into ``dst`` (see the module docstring); returns {file name: bytes}."""
    dst.mkdir(parents=True, exist_ok=True)
    for old in [*dst.glob("step-*.png"), *dst.glob("*.part-*"), dst / PARTS]:
        old.unlink(missing_ok=True)  # a previous packing's leftovers
    done = {}
    shutil.copyfile(src / "synthesizer.pt", dst / "synthesizer.pt")
    shutil.copyfile(src / "log.jsonl", dst / "log.jsonl")
    if (src / "optimizer.pt").is_file():
        pack_optimizer(src / "optimizer.pt", dst / "optimizer.pt")
    pngs = sorted((src / "alignments").glob("step-*.png"))
    if pngs:
        shutil.copyfile(pngs[-1], dst / pngs[-1].name)
    parts = {}
    for path in sorted(dst.iterdir()):
        if path.suffix == ".pt" and path.stat().st_size > part_mib * 2**20:
            parts[path.name] = _split(path, int(part_mib * 2**20))
    if parts:
        (dst / PARTS).write_text(json.dumps(parts, indent=1) + "\n")
    for path in sorted(dst.iterdir()):
        if path.name != "run.sh":
            done[path.name] = path.stat().st_size
    return done


def unpack_run(src: Path, dst: Path) -> list[str]:
    """Rebuild a run directory in ``dst`` from packed ``src``; raises ValueError on a damaged file."""
    parts = json.loads((src / PARTS).read_text()) if (src / PARTS).is_file() else {}
    dst.mkdir(parents=True, exist_ok=True)
    written = []
    for name, info in parts.items():
        data = b"".join((src / p).read_bytes() for p in info["parts"])
        if len(data) != info["bytes"] or hashlib.sha256(data).hexdigest() != info["sha256"]:
            raise ValueError(f"{src / name}: its parts do not join to the packed file (size or SHA-256 differs)")
        (dst / name).write_bytes(data)
        written.append(name)
    for path in sorted(src.iterdir()):
        if path.name in ("synthesizer.pt", "optimizer.pt", "log.jsonl"):
            shutil.copyfile(path, dst / path.name)
            written.append(path.name)
    return sorted(written)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("src", type=Path, help="pack: a run directory (synthesizer.pt, optimizer.pt, log.jsonl, alignments/); "
                                          "--unpack: a packed folder")
    p.add_argument("dst", type=Path, help="pack: the folder to commit; --unpack: the run directory to resume")
    p.add_argument("--unpack", action="store_true", help="rebuild a run directory from a packed folder")
    p.add_argument("--part-mib", type=float, default=32.0, help="largest file written when packing (MiB)")
    a = p.parse_args(argv)
    if a.unpack:
        print("\n".join(str(a.dst / n) for n in unpack_run(a.src, a.dst)))
        return 0
    for name, size in pack_run(a.src, a.dst, a.part_mib).items():
        print(f"{a.dst / name}: {size / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
