"""Training of the mel inverter (:mod:`rtclone.mel_inverter`) on a corpus's recordings.

``prepare_pairs`` turns utterances into (mel, log-magnitude) frame pairs, held in one float16 array
each with the utterances' offsets (a cache file, ``.npz``); ``train_inverter`` fits random windows of
them with an L1 loss on the normalised log magnitude (the scale of the mel: 1 unit = 12.5 dB), Adam
with a cosine decay, and checkpoints every ``checkpoint_every`` steps (resumable: the optimizer and
the step travel in ``inverter_optimizer.pt``). Validation: fixed windows of the corpus's eval split,
logged with the pseudo-inverse's loss on the same windows (the model's starting point) beside it.
"""

from __future__ import annotations

import json
import math
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from .. import audio
from ..checkpoints import build_model, read_checkpoint, save_model
from ..errors import OptionsError
from ..mel_inverter import InverterDims, MelInverter, amplitude, spectrogram

CHECKPOINT_NAME = "inverter.pt"
OPTIMIZER_NAME = "inverter_optimizer.pt"


def _pair(path: str) -> tuple[np.ndarray, np.ndarray]:
    wav = audio.load_audio(path)
    return audio.synth_mel(wav).astype(np.float16), spectrogram(wav).astype(np.float16)


def prepare_pairs(paths: Sequence[str | Path], out: Path, jobs: int = 1,
                  progress: Callable[[int, int], None] | None = None) -> dict[str, np.ndarray]:  # fmt: skip
    """Compute and save (``out``, .npz) the frame pairs of ``paths``: mel (T, 80), mag (T, 401), offsets."""
    if not paths:
        raise OptionsError("no utterances to prepare")
    mels, mags = [], []
    with ProcessPoolExecutor(max(1, jobs)) as pool:
        for i, (mel, mag) in enumerate(pool.map(_pair, [str(p) for p in paths], chunksize=16)):
            mels.append(mel.T)
            mags.append(mag.T)
            if progress:
                progress(i + 1, len(paths))
    offsets = np.cumsum([0] + [len(m) for m in mels]).astype(np.int64)
    data = {"mel": np.concatenate(mels), "mag": np.concatenate(mags), "offsets": offsets}
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, **data)
    return data


def _gta_pair(item: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    mel_path, audio_path = item
    mel, mag = np.load(mel_path), spectrogram(np.load(audio_path))
    if mel.shape != (audio.SYN_N_MELS, mag.shape[1]):
        raise OptionsError(f"{mel_path}: {mel.shape[1]} frames, its audio {audio_path} makes {mag.shape[1]}")
    return mel.astype(np.float16), mag.astype(np.float16)


def prepare_gta_pairs(export: Path, out: Path, jobs: int = 1) -> dict[str, np.ndarray]:
    """Frame pairs of an ``rtclone train gta`` export: its teacher-forced mels with the true magnitudes of
    the audio each was aligned to (so the inverter learns to undo the synthesizer's smoothing too)."""
    from ..errors import InputShapeError
    from .synthesizer import read_gta_export

    try:
        rows = read_gta_export(export)
    except InputShapeError as exc:
        raise OptionsError(f"{export}: not a usable rtclone GTA export ({exc})") from exc
    if rows is None:
        raise OptionsError(f"{export}: not an rtclone GTA export (no rtclone-gta metadata.json)")
    items = [(str(row["mel"]), str(row["audio"])) for row in rows]
    if not items:
        raise OptionsError(f"{export}: the GTA export has no items")
    mels, mags = [], []
    with ProcessPoolExecutor(max(1, jobs)) as pool:
        for mel, mag in pool.map(_gta_pair, items, chunksize=16):
            mels.append(mel.T)
            mags.append(mag.T)
    offsets = np.cumsum([0] + [len(m) for m in mels]).astype(np.int64)
    data = {"mel": np.concatenate(mels), "mag": np.concatenate(mags), "offsets": offsets}
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, **data)
    return data


def corpus_paths(corpus: Path, split: str) -> list[Path]:
    """The audio files of a built corpus's ``split`` ("train" or "eval"), in manifest order."""
    try:
        manifest = json.loads((corpus / "manifest.json").read_text())
    except (OSError, ValueError) as exc:
        raise OptionsError(f"{corpus}: not a built corpus (manifest.json: {exc})") from exc
    return [corpus / u["path"] for u in manifest["utterances"] if u.get("split") == split]


def _windows(data: dict[str, np.ndarray], n: int, width: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """n random windows of ``width`` frames inside single utterances: mel (n, 80, width), mag (n, 401, width)."""
    off = data["offsets"]
    lengths = np.diff(off)
    ok = np.flatnonzero(lengths >= width)
    if len(ok) == 0:
        raise OptionsError(f"no utterance has {width} frames")
    utt = rng.choice(ok, n, p=lengths[ok] / lengths[ok].sum())
    start = off[utt] + (rng.random(n) * (lengths[utt] - width + 1)).astype(np.int64)
    idx = start[:, None] + np.arange(width)[None]
    mel = torch.from_numpy(data["mel"][idx].astype(np.float32)).transpose(1, 2)
    mag = torch.from_numpy(data["mag"][idx].astype(np.float32)).transpose(1, 2)
    return mel, mag


def train_inverter(train: dict[str, np.ndarray], out: Path, *, val: dict[str, np.ndarray] | None = None,
                   steps: int = 10_000, batch: int = 32, frames: int = 40, lr: float = 1e-3,
                   dims: InverterDims = InverterDims(), seed: int = 0, checkpoint_every: int = 1_000, sc: float = 0.0,
                   log: Callable[[dict[str, Any]], None] | None = None) -> Path:  # fmt: skip
    """Train (or resume in ``out``) to ``steps``; returns the checkpoint path."""
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path, opt_path = out / CHECKPOINT_NAME, out / OPTIMIZER_NAME
    torch.manual_seed(seed)
    step = 0
    if ckpt_path.exists():
        model = build_model(read_checkpoint(ckpt_path, "inverter"))
        dims = model.dims
    else:
        model = MelInverter(dims)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    if ckpt_path.exists() and opt_path.exists():
        state = torch.load(opt_path, weights_only=True)
        opt.load_state_dict(state["optimizer"])
        step = int(state["step"])
    c = dims.context
    width = frames + 2 * c
    val_set = _windows(val, 256, width, np.random.default_rng(12345)) if val is not None else None

    def validate() -> dict[str, float]:
        if val_set is None:
            return {}
        model.eval()
        with torch.no_grad():
            mel, mag = val_set
            target = mag[:, :, c : width - c]
            pred = model(mel)
            base = model.base(mel[:, :, c : width - c])
        model.train()
        return {"val_loss": float((pred - target).abs().mean()), "val_pinv": float((base - target).abs().mean())}

    model.train()
    rng = np.random.default_rng([seed, step])
    t0, losses = time.monotonic(), []
    while step < steps:
        for g in opt.param_groups:
            g["lr"] = lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, step / max(1, steps))))
        mel, mag = _windows(train, batch, width, rng)
        pred, target = model(mel), mag[:, :, c : width - c]
        loss = (pred - target).abs().mean()
        if sc:  # spectral convergence on linear magnitudes: weights the loud bins (harmonic peaks)
            lin_p, lin_t = amplitude(pred), amplitude(target)
            loss = loss + sc * (torch.linalg.vector_norm(lin_p - lin_t, dim=1) / torch.linalg.vector_norm(lin_t, dim=1).clamp_min(1e-3)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        losses.append(loss.item())
        if step % checkpoint_every == 0 or step == steps:
            save_model(model, ckpt_path, "inverter", meta={"step": step})
            torch.save({"optimizer": opt.state_dict(), "step": step}, opt_path)
            row = {"step": step, "loss": float(np.mean(losses)), "lr": opt.param_groups[0]["lr"],
                   "s_per_step": (time.monotonic() - t0) / len(losses), **validate()}  # fmt: skip
            with open(out / "log.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")
            if log:
                log(row)
            t0, losses = time.monotonic(), []
    return ckpt_path
