"""Synthesizer training: data preparation, teacher-forced training (DDP-ready), GTA mel export.

Prepared data directory (written by :func:`prepare_synthesizer_data`)::

    metadata.json   {"format": "rtclone-synth-data", "version": 1, "items": [{"id", "speaker", "text",
                     "frames", "samples"}, ...], "skipped_items": [[id, text], ...], "max_frames": n}
    mels/<id>.npy   (80, T) float32 synthesizer mel of the VAD-trimmed utterance
    embeds/<id>.npy (256,) float32 the utterance's own speaker embedding (as in the SV2TTS thesis)
    audio/<id>.npy  (samples,) float32 16 kHz trimmed audio (for vocoder training on GTA mels)

Training writes ``out_dir/synthesizer.pt`` (rtclone format, loadable by
``rtclone.checkpoints.load_model``), ``out_dir/optimizer.pt`` (optimizer state, for resume),
``out_dir/alignments/step-XXXXXX.png`` at each evaluation and ``out_dir/log.jsonl``.
Several processes: launch with ``torchrun --nproc_per_node N -m rtclone.train.synthesizer ...``
(gloo on CPU, nccl on GPU); rank 0 does the I/O.
"""

from __future__ import annotations

import argparse
import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..kernels.cpu import gru as fused_lstm
from ..errors import InputShapeError, OptionsError
from ..synthesizer import SynthesizerDims, Tacotron
from .dist import distributed, print_report
from .speaker_loss import SpeakerLoss
# data preparation lives in .prepare; its names stay importable from here
from .prepare import DATA_FORMAT, DATA_VERSION, prepare_synthesizer_data, read_metadata, synthesizer_items  # noqa: F401

MEL_PAD = -4.0  # padding value of target mels: silence in the symmetric [-4, 4] scale


# ---- batching -----------------------------------------------------------------------------------
class SynthDataset:
    """Prepared items as (chars, mel (80, T), embedding) in memory-mapped arrays."""

    def __init__(self, prepared_dir: str | Path) -> None:
        from ..text import text_to_ids

        self.root = Path(prepared_dir)
        self.items = read_metadata(self.root)
        self.chars = [np.asarray(text_to_ids(it["text"]), dtype=np.int64) for it in self.items]

    def __len__(self) -> int:
        return len(self.items)

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        uid = self.items[i]["id"]
        mel = np.load(self.root / "mels" / f"{uid}.npy", mmap_mode="r")
        emb = np.load(self.root / "embeds" / f"{uid}.npy")
        return self.chars[i], mel, emb


def bucket_batches(lengths: Sequence[int], batch_size: int, rng: np.random.Generator) -> list[list[int]]:
    """Length bucketing: shuffle, sort within windows of 8 batches by length, cut, shuffle batches."""
    order = rng.permutation(len(lengths))
    window = batch_size * 8
    batches = []
    for w in range(0, len(order), window):
        chunk = sorted(order[w:w + window], key=lambda i: lengths[i])
        batches += [list(chunk[b:b + batch_size]) for b in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def collate(ds: SynthDataset, idx: Sequence[int], r: int) -> dict[str, torch.Tensor]:
    """Pad a batch: chars (B, T_text) 0-padded, mels (B, 80, T) with T a multiple of r (padded
    with silence), stop targets (B, T) = 1 from each item's last frame, lengths."""
    rows = [ds.load(i) for i in idx]
    t_text = max(len(c) for c, _, _ in rows)
    t_mel = max(m.shape[1] for _, m, _ in rows)
    t_mel = -(-t_mel // r) * r
    B = len(rows)
    chars = torch.zeros(B, t_text, dtype=torch.long)
    mels = torch.full((B, rows[0][1].shape[0], t_mel), MEL_PAD)
    stop = torch.zeros(B, t_mel)
    for b, (c, m, _) in enumerate(rows):
        chars[b, :len(c)] = torch.from_numpy(c)
        mels[b, :, :m.shape[1]] = torch.from_numpy(np.array(m))
        stop[b, m.shape[1] - 1:] = 1.0
    embeds = torch.from_numpy(np.stack([e for _, _, e in rows]).astype(np.float32))
    text_lens = torch.tensor([len(c) for c, _, _ in rows])
    mel_lens = torch.tensor([m.shape[1] for _, m, _ in rows])
    return {"chars": chars, "mels": mels, "stop": stop, "embeds": embeds, "text_lens": text_lens, "mel_lens": mel_lens}


# ---- losses and alignment metrics ----------------------------------------------------------------
def guided_attention_loss(attn: torch.Tensor, text_lens: torch.Tensor, step_lens: torch.Tensor, g: float = 0.2) -> torch.Tensor:
    """Penalty on attention far from the diagonal (Tachibana et al. 2017): attn (B, steps, T_text)."""
    B, S, N = attn.shape
    s = torch.arange(S, device=attn.device).view(1, S, 1) / step_lens.view(B, 1, 1).clamp(min=1)
    n = torch.arange(N, device=attn.device).view(1, 1, N) / text_lens.view(B, 1, 1).clamp(min=1)
    w = 1.0 - torch.exp(-((n - s) ** 2) / (2 * g * g))
    valid = (torch.arange(S, device=attn.device).view(1, S, 1) < step_lens.view(B, 1, 1)) & \
            (torch.arange(N, device=attn.device).view(1, 1, N) < text_lens.view(B, 1, 1))
    return (attn * w * valid).sum() / valid.sum().clamp(min=1)


def alignment_scores(attn: np.ndarray) -> dict[str, float]:
    """How sharp and diagonal an alignment (steps, T_text) is.

    ``focus``: mean over decoder steps of the largest attention weight (1 = one symbol at a time);
    ``diagonal``: Pearson correlation of the attention peak with the decoder step (1 = monotonic line).
    """
    attn = np.asarray(attn, dtype=np.float64)
    peaks = attn.argmax(axis=1).astype(np.float64)
    steps = np.arange(len(peaks), dtype=np.float64)
    diag = float(np.corrcoef(steps, peaks)[0, 1]) if peaks.std() > 0 and len(peaks) > 1 else 0.0
    return {"focus": float(attn.max(axis=1).mean()), "diagonal": diag}


def save_alignment_png(attn: np.ndarray, path: str | Path, title: str = "") -> Path:
    """Plot an alignment (steps, T_text) to a PNG (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.imshow(np.asarray(attn).T, aspect="auto", origin="lower", interpolation="none")
    ax.set_xlabel("decoder step")
    ax.set_ylabel("input symbol")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def r_at(step: int, r_schedule: Sequence[tuple[int, int]]) -> int:
    """Reduction factor at a step from ``[(start_step, r), ...]`` (the last started entry wins)."""
    r = r_schedule[0][1]
    for start, value in sorted(r_schedule):
        if step >= start:
            r = value
    return r


def taco_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor], guided_attention: float,
              generator: torch.Generator | None = None, own_frames: float = 0.0, own_parallel: bool = False,
              speaker: SpeakerLoss | None = None,
              ) -> tuple[torch.Tensor, dict[str, float], torch.Tensor]:
    """Tacotron loss of a batch (RTVC's: L1+MSE on the decoder mel, MSE on the postnet mel, stop BCE),
    plus ``guided_attention`` × the guided-attention penalty; ``own_frames`` is the scheduled-sampling
    probability, ``own_parallel`` its parallel form (see :meth:`Tacotron.forward`); ``speaker`` (a
    :class:`~.speaker_loss.SpeakerLoss`) adds its weighted speaker-consistency loss of the postnet mel (part
    ``speaker``). Returns (loss, parts, attention)."""
    mels, stop = batch["mels"], batch["stop"]
    free_run = min(speaker.free_run, mels.size(2)) if speaker is not None else 0
    mel_out, post_out, attn, stop_logits, *free = model(batch["chars"], mels, batch["embeds"], generator, own_frames,
                                                        own_parallel, free_run)
    parts = {
        "mel": F.mse_loss(mel_out, mels) + F.l1_loss(mel_out, mels),
        "post": F.mse_loss(post_out, mels),
        "stop": F.binary_cross_entropy_with_logits(stop_logits, stop),
    }
    if guided_attention > 0:
        r = mels.size(2) // attn.size(1)
        step_lens = torch.div(batch["mel_lens"] + r - 1, r, rounding_mode="floor")
        parts["guided"] = guided_attention * guided_attention_loss(attn, batch["text_lens"], step_lens)
    if speaker is not None and free_run:
        parts["speaker"] = speaker(free[0], mels[:, :, :free_run], batch["mel_lens"].clamp(max=free_run))
    elif speaker is not None:
        parts["speaker"] = speaker(post_out, mels, batch["mel_lens"])
    loss = sum(parts.values())
    return loss, {k: float(v.detach()) for k, v in parts.items()}, attn


def validation_loss(model: Tacotron, ds: SynthDataset, guided_attention: float = 0.0, *, items: int = 64,
                    batch_size: int = 16, seed: int = 0,
                    speaker: SpeakerLoss | None = None) -> dict[str, float]:
    """Teacher-forced loss parts (``val_mel``, ``val_post``, ``val_stop``…) of ``model`` on ``items``
    evenly spaced items of ``ds``, the same items and prenet-dropout masks on every call, so that
    checkpoints compare (``speaker`` as in :func:`taco_loss`, its windows drawn from a generator of its own
    seeded with ``seed``, so the other parts are those of a run without it). Runs in eval mode (BatchNorm statistics untouched) and restores the mode."""
    device = next(model.parameters()).device
    picked = sorted({int(i) for i in np.linspace(0, len(ds) - 1, min(items, len(ds))).round()},
                    key=lambda i: ds.items[i]["frames"])  # length order: less padding
    gen = torch.Generator(device=device).manual_seed(seed)
    speaker = speaker.reseeded(seed) if speaker is not None else None
    was_training, totals = model.training, {}
    model.eval()
    try:
        with torch.no_grad():
            for k in range(0, len(picked), batch_size):
                idx = picked[k:k + batch_size]
                batch = {key: v.to(device) for key, v in collate(ds, idx, model.r).items()}
                _, parts, _ = taco_loss(model, batch, guided_attention, gen, speaker=speaker)
                for name, v in parts.items():
                    totals[name] = totals.get(name, 0.0) + v * len(idx)
    finally:
        model.train(was_training)
    return {f"val_{name}": v / len(picked) for name, v in totals.items()}


# ---- training -----------------------------------------------------------------------------------
def _check_schedule(r_schedule: Sequence[tuple[int, int]], max_r: int) -> list[tuple[int, int]]:
    sched = sorted((int(s), int(r)) for s, r in r_schedule)
    if not sched or sched[0][0] != 0 or any(not 1 <= r <= max_r for _, r in sched):
        raise OptionsError(f"r_schedule must be [(start_step, r), ...] starting at step 0 with 1 <= r <= {max_r}, "
                           f"got {r_schedule!r}")
    return sched


def train_synthesizer(prepared_dir: str | Path, out_dir: str | Path, *, dims: SynthesizerDims | None = None,
                      steps: int = 100_000, batch_size: int = 16, r_schedule: Sequence[tuple[int, int]] = ((0, 2),),
                      lr: float = 1e-3, guided_attention: float = 0.0, seed: int = 0, resume: bool = True,
                      progress: bool = False, checkpoint_every: int = 1000, grad_clip: float = 1.0,
                      val_dir: str | Path | None = None, val_items: int = 64, own_frames: float = 0.0,
                      bf16_lstm: bool = False, zoneout: float = 0.0, own_parallel: bool = False,
                      own_ramp: tuple[int, int] | None = None, lr_decay: tuple[int, int] | None = None,
                      lr_final: float | None = None, speaker_loss: float = 0.0, speaker_free_run: int = 0) -> dict[str, Any]:
    """Train (or resume training) a Tacotron on a prepared directory until ``steps`` total steps.

    Teacher forcing; length-bucketed batches; reduction factor from ``r_schedule``
    ([(start_step, r), ...]); Adam at ``lr``; gradient-norm clipping at ``grad_clip``; optional
    guided-attention loss of weight ``guided_attention``; scheduled sampling with probability
    ``own_frames`` (a step's input is then the model's own previous frame, as at inference;
    ``own_parallel``: the frame a first teacher-forced pass predicted, see :meth:`Tacotron.forward`;
    ``own_ramp`` = (a, b): the probability rises linearly from 0 at step a to ``own_frames`` at step b,
    counted in the checkpoint's steps, so a resumed run goes on where it was);
    ``bf16_lstm``: the decoder's residual LSTMs take bfloat16 product operands (float32 accumulation,
    states and gates; :attr:`rtclone.tacotron_layers.Decoder.lstm_bf16`), a cheaper step where the
    CPU has AVX512-BF16 (benchmarks/train_synthesizer.py); ``zoneout``: the probability with which
    each residual-LSTM state unit keeps its previous value at a training step (RTVC trains with 0.1;
    :attr:`rtclone.tacotron_layers.Decoder.zoneout`); ``lr_decay`` = (a, b) with ``lr_final``: the rate falls
    geometrically from ``lr`` at step a to ``lr_final`` at step b and stays there (:func:`lr_at`; checkpoint
    steps, so a resumed run goes on where it was); ``speaker_loss``: the weight of the speaker-consistency
    loss (:mod:`.speaker_loss`: the frozen pretrained encoder's cosine distance between the postnet mel and the
    recording, on a 1.6 s window; 0 = off; the validation loss then logs it too); ``speaker_free_run`` = F > 0: that
    loss judges the first F frames decoded free-running instead (:class:`~.speaker_loss.SpeakerLoss`). Every
    ``checkpoint_every`` steps and at the end, rank 0 saves ``out_dir/synthesizer.pt`` +
    ``optimizer.pt`` and an alignment PNG, and logs the batch's loss parts (plus :func:`validation_loss` on ``val_dir``, a prepared held-out set).
    With ``resume`` an existing checkpoint in ``out_dir`` is continued (its dims win over ``dims``).
    Under torchrun the model is wrapped in DistributedDataParallel and batches are sharded.
    Returns ``{"step", "losses" (this run, per step), "checkpoint", "alignment" (last eval scores),
    "world_size"}``.
    """
    from tqdm import tqdm

    from .. import checkpoints

    if not (isinstance(steps, int) and steps >= 1 and isinstance(batch_size, int) and batch_size >= 1
            and checkpoint_every >= 1 and lr > 0 and guided_attention >= 0 and grad_clip > 0 and 0 <= own_frames <= 1
            and 0 <= zoneout < 1 and (own_ramp is None or 0 <= own_ramp[0] < own_ramp[1]) and 0 <= speaker_loss < 1e3
            and isinstance(speaker_free_run, int) and 0 <= speaker_free_run <= 1000):
        raise OptionsError("need steps >= 1, batch_size >= 1, checkpoint_every >= 1, lr > 0, guided_attention >= 0, "
                           "grad_clip > 0, 0 <= own_frames <= 1, 0 <= zoneout < 1, 0 <= speaker_loss < 1000, "
                           "an integer 0 <= speaker_free_run <= 1000 "
                           "and an own_ramp a:b with 0 <= a < b")
    if (lr_decay is None) != (lr_final is None) or (lr_decay is not None and not (
            0 <= lr_decay[0] < lr_decay[1] and 0 < lr_final <= lr)):
        raise OptionsError(f"lr_decay a:b (0 <= a < b) and lr_final (0 < lr_final <= lr = {lr}) go together, "
                           f"got lr_decay={lr_decay!r}, lr_final={lr_final!r}")
    rank, world, own_pg = distributed()
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu")
    out_dir = Path(out_dir)
    ckpt_path, opt_path = out_dir / "synthesizer.pt", out_dir / "optimizer.pt"
    torch.manual_seed(seed)
    if resume and ckpt_path.is_file():
        model = checkpoints.build_model(checkpoints.read_checkpoint(ckpt_path, "synthesizer"))
    else:
        model = Tacotron(dims or SynthesizerDims.small())
    model.to(device).train()
    model.decoder.lstm_bf16 = bool(bf16_lstm)
    if bf16_lstm and not fused_lstm.lstm_available():
        warnings.warn("--bf16-lstm has no effect: the C LSTM layer (rtclone.kernels.cpu._gru) is not built or is "
                      "turned off (RTCLONE_FUSED_LSTM=0); torch's float32 LSTM trains instead", stacklevel=2)
    model.decoder.zoneout = float(zoneout)
    speaker = SpeakerLoss.pretrained(speaker_loss, device, speaker_free_run) if speaker_loss > 0 else None
    sched = _check_schedule(r_schedule, model.dims.max_r)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    if resume and ckpt_path.is_file() and opt_path.is_file():
        # the saved rate does not survive: every step sets the rate lr_at gives
        optimizer.load_state_dict(torch.load(opt_path, map_location=device, weights_only=True)["optimizer"])
    net: torch.nn.Module = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    ds = SynthDataset(prepared_dir)
    val_ds = SynthDataset(val_dir) if val_dir is not None and rank == 0 else None
    lengths = [it["frames"] for it in ds.items]
    step = int(model.step)
    losses: list[float] = []
    scores: dict[str, float] = {}
    bar = tqdm(total=steps, initial=step, desc="synthesizer", unit="step", disable=not progress or rank != 0)
    # A resumed run continues the epoch it stopped in, so every session does not replay epoch 0's order.
    per_epoch = len(bucket_batches(lengths, batch_size, np.random.default_rng([seed, 0]))) // world
    if per_epoch == 0:
        raise OptionsError(f"{len(ds)} items give fewer than {world} batches of {batch_size}: one per process needed")
    epoch, skip = divmod(step, per_epoch)
    while step < steps:
        batches = bucket_batches(lengths, batch_size, np.random.default_rng([seed, epoch]))
        usable = len(batches) - len(batches) % world
        for idx in batches[:usable][rank::world][skip:]:
            if step >= steps:
                break
            model.set_r(r_at(step, sched))
            batch = {k: v.to(device) for k, v in collate(ds, idx, model.r).items()}
            p_own = own_frames * _ramp(step, own_ramp)
            rate = lr_at(step, lr, lr_decay, lr_final)
            for group in optimizer.param_groups:
                group["lr"] = rate
            loss, parts, attn = taco_loss(net, batch, guided_attention, own_frames=p_own, own_parallel=own_parallel,
                                          speaker=speaker)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            model.step += 1
            step += 1
            losses.append(float(loss.detach()))
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.3f}", r=model.r)
            if step % checkpoint_every == 0 or step == steps:
                steps_i = -(-int(batch["mel_lens"][0]) // model.r)
                a = attn[0, :steps_i, :int(batch["text_lens"][0])].detach().cpu().numpy()
                scores = alignment_scores(a)
                if rank == 0:
                    val = validation_loss(model, val_ds, guided_attention, items=val_items, seed=seed,
                                          speaker=speaker) if val_ds else {}
                    _save(model, optimizer, out_dir, step, a, scores,
                          {**parts, **val, **({"own_frames": p_own} if own_frames else {}),
                           **({"own_parallel": True} if own_frames and own_parallel else {}),
                           **({"bf16_lstm": True} if bf16_lstm else {}), **({"zoneout": zoneout} if zoneout else {}),
                           **({"lr": rate} if lr_decay else {}), **({"speaker_weight": speaker_loss} if speaker else {}),
                           **({"speaker_free_run": speaker_free_run} if speaker and speaker_free_run else {})})
        epoch, skip = epoch + 1, 0
    bar.close()
    if own_pg:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
    return {"step": step, "losses": losses, "checkpoint": str(ckpt_path), "alignment": scores, "world_size": world}


def _save(model: Tacotron, optimizer: torch.optim.Optimizer, out_dir: Path, step: int, attn: np.ndarray,
          scores: dict[str, float], parts: dict[str, float]) -> None:
    from .. import checkpoints

    checkpoints.save_model(model, out_dir / "synthesizer.pt", "synthesizer", meta={"step": step, "r": model.r})
    tmp = out_dir / "optimizer.pt.tmp"
    torch.save({"optimizer": optimizer.state_dict(), "step": step}, tmp)
    tmp.replace(out_dir / "optimizer.pt")
    save_alignment_png(attn, out_dir / "alignments" / f"step-{step:06d}.png",
                       f"step {step}  focus {scores['focus']:.2f}  diagonal {scores['diagonal']:.2f}")
    with open(out_dir / "log.jsonl", "a") as f:
        f.write(json.dumps({"step": step, "r": model.r, **parts, **scores}) + "\n")


# ---- ground-truth-aligned mels -------------------------------------------------------------------
@torch.inference_mode()
def export_gta(model_ckpt: str | Path, prepared_dir: str | Path, out_dir: str | Path, *, batch_size: int = 8,
               seed: int = 0, progress: bool = False) -> dict[str, Any]:
    """Teacher-forced (GTA) postnet mels of every prepared item, for vocoder training.

    Writes ``out_dir/gta/<id>.npy`` (80, T) float32 (T = the target mel's length, so it pairs with
    ``prepared_dir/audio/<id>.npy``) and ``out_dir/metadata.json`` ({"format": "rtclone-gta",
    "version": 1, "items": [{"id", "mel", "audio", "frames"}]}, paths relative to out_dir or absolute).
    Prenet dropout is seeded with ``seed``. Returns ``{"items": n, "out": path}``.
    """
    from tqdm import tqdm

    from .. import checkpoints

    model = checkpoints.load_model(model_ckpt, "synthesizer")
    ds = SynthDataset(prepared_dir)
    out_dir = Path(out_dir)
    (out_dir / "gta").mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    order = sorted(range(len(ds)), key=lambda i: ds.items[i]["frames"])
    rows = []
    for b in tqdm(range(0, len(order), batch_size), desc="gta", unit="batch", disable=not progress):
        idx = order[b:b + batch_size]
        batch = collate(ds, idx, model.r)
        mel_out, _, _, _ = model(batch["chars"], batch["mels"], batch["embeds"], gen)
        for j, i in enumerate(idx):
            n = int(batch["mel_lens"][j])
            gta = model.postnet_mel(mel_out[j:j + 1, :, :n])[0]  # (80, n): postnet on the item alone
            uid = ds.items[i]["id"]
            np.save(out_dir / "gta" / f"{uid}.npy", gta.numpy().astype(np.float32), allow_pickle=False)
            rows.append({"id": uid, "mel": f"gta/{uid}.npy", "audio": str((ds.root / "audio" / f"{uid}.npy").resolve()),
                         "frames": n})
    (out_dir / "metadata.json").write_text(json.dumps({"format": "rtclone-gta", "version": 1, "items": rows}, indent=1))
    return {"items": len(rows), "out": str(out_dir)}


def read_gta_export(root: str | Path) -> list[dict[str, Any]] | None:
    """The items of an :func:`export_gta` folder as ``{"id", "mel": Path, "audio": Path}`` (files checked),
    or None when ``root`` holds no ``rtclone-gta`` metadata.json. A malformed export is an InputShapeError."""
    root = Path(root)
    meta = root / "metadata.json"
    if not meta.is_file():
        return None
    try:
        doc = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputShapeError(f"{meta}: unreadable ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") != "rtclone-gta":
        return None
    items = []
    for row in doc.get("items", []):
        if not isinstance(row, dict) or not all(isinstance(row.get(k), str) for k in ("id", "audio", "mel")):
            raise InputShapeError(f"{meta}: an item without 'id', 'audio' and 'mel' paths: {row!r:.200}")
        wav, mel = Path(row["audio"]), root / row["mel"]
        if not wav.is_file() or not mel.is_file():
            raise InputShapeError(f"{meta}: item {row['id']!r} points at a missing file ({wav if not wav.is_file() else mel})")
        items.append({"id": row["id"], "mel": mel, "audio": wav})
    return items


# ---- torchrun entry point ------------------------------------------------------------------------
def parse_r_schedule(text: str) -> list[tuple[int, int]]:
    """"0:7,2000:4,4000:2" → [(0, 7), (2000, 4), (4000, 2)]."""
    try:
        return [(int(a), int(b)) for a, b in (part.split(":") for part in text.split(","))]
    except ValueError as exc:
        raise OptionsError(f"bad r schedule {text!r} (expected start:r,start:r,...)") from exc


def _ramp(step: int, ramp: tuple[int, int] | None) -> float:
    """The fraction of the scheduled-sampling probability in force at ``step`` (see ``own_ramp``)."""
    if ramp is None:
        return 1.0
    return float(min(1.0, max(0.0, (step - ramp[0]) / (ramp[1] - ramp[0]))))


def lr_at(step: int, lr: float, decay: tuple[int, int] | None, final: float | None) -> float:
    """Adam's rate at ``step``: ``lr`` before ``decay[0]``, ``final`` from ``decay[1]`` on, geometric between."""
    if decay is None or final is None:
        return lr
    return float(lr * (final / lr) ** _ramp(step, decay))


def parse_ramp(text: str | None) -> tuple[int, int] | None:
    """'a:b' (steps) → (a, b); None stays None."""
    if text is None:
        return None
    try:
        a, b = (int(x) for x in text.split(":"))
    except ValueError:
        raise OptionsError(f"a ramp is 'START:END' in steps, got {text!r}") from None
    return a, b


def main(argv: Sequence[str] | None = None) -> int:
    """``torchrun --nproc_per_node N -m rtclone.train.synthesizer PREPARED OUT [...]`` (the training options of
    ``rtclone train synthesizer``)."""
    from ..cli_train import add_train_synthesizer_args, synthesizer_run_options

    p = argparse.ArgumentParser(prog="python -m rtclone.train.synthesizer", description=main.__doc__)
    p.add_argument("prepared")
    p.add_argument("out")
    p.add_argument("--progress", action="store_true")
    add_train_synthesizer_args(p)
    a = p.parse_args(argv)
    res = train_synthesizer(**synthesizer_run_options(a, a.prepared, progress=a.progress))
    print_report(res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
