"""GE2E training of the speaker encoder (Wan et al. 2018, "Generalized end-to-end loss").

A batch holds S speakers × U utterances (one random 160-frame partial each). Every embedding is
compared by cosine with every speaker's centroid; a speaker's own centroid excludes the utterance
being compared. The similarities are scaled by a learnable w (kept >= 1e-6) and shifted by a
learnable b (initialised to 10 and -5), and a softmax over speakers is trained to pick the right
one. As in the paper, the gradients of w and b are scaled by 0.01 and the global gradient norm is
clipped to 3.

Files in ``out_dir``: ``encoder.pt`` (rtclone checkpoint; ``meta`` holds step, loss, EER),
``encoder_optim.pt`` (optimizer state and step, for resume), ``encoder_log.jsonl`` (one JSON
line per step: step, loss, eer, w, b) and ``mel_cache/`` (the training mels).
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import torch
from torch import nn

from ..checkpoints import read_checkpoint, build_model, save_model
from ..encoder import EncoderDims, SpeakerEncoder
from ..errors import OptionsError
from ..eval import equal_error_rate
from .data import GE2EBatchSampler, MelStore, load_speaker_mels, speaker_files

SIMILARITY_GRAD_SCALE = 0.01  # the paper's gradient scale on w and b
GRAD_CLIP_NORM = 3.0  # global L2 norm of the gradients
MIN_SIMILARITY_WEIGHT = 1e-6

CHECKPOINT_NAME = "encoder.pt"
OPTIM_NAME = "encoder_optim.pt"
LOG_NAME = "encoder_log.jsonl"


def similarity_matrix(embeds: torch.Tensor) -> torch.Tensor:
    """Cosine similarities (S, U, S) of every embedding to every speaker centroid.

    ``embeds`` is (S, U, D). Entry [j, i, k] compares utterance i of speaker j with speaker k's
    centroid; for k == j the centroid leaves utterance i out (exclusive centroid).
    """
    S, U, _ = embeds.shape
    if S < 2 or U < 2:
        raise OptionsError(f"GE2E needs >= 2 speakers and >= 2 utterances each, got {S} x {U}")
    e = embeds / embeds.norm(dim=2, keepdim=True).clamp_min(1e-12)  # (S, U, D)
    total = e.sum(dim=1, keepdim=True)  # (S, 1, D)
    incl = total / U  # (S, 1, D)
    excl = (total - e) / (U - 1)  # (S, U, D)
    incl = incl / incl.norm(dim=2, keepdim=True).clamp_min(1e-12)
    excl = excl / excl.norm(dim=2, keepdim=True).clamp_min(1e-12)
    sim = torch.einsum("jid,kd->jik", e, incl[:, 0])  # (S, U, S)
    own = (e * excl).sum(dim=2)  # (S, U)
    mask = torch.eye(S, dtype=torch.bool, device=embeds.device)[:, None, :]  # (S, 1, S)
    return torch.where(mask, own[:, :, None], sim)


def ge2e_loss(embeds: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, float]:
    """GE2E softmax loss of embeddings (S, U, D) and the batch EER (from the same similarities).

    Returns ``(loss, eer)``: the mean cross-entropy over the S * U utterances, and the equal error
    rate of the unscaled similarity scores (same speaker vs. others).
    """
    S, U, _ = embeds.shape
    sim = similarity_matrix(embeds)  # (S, U, S)
    logits = sim * w.clamp_min(MIN_SIMILARITY_WEIGHT) + b  # (S, U, S)
    target = torch.arange(S, device=embeds.device).repeat_interleave(U)  # (S * U,)
    loss = nn.functional.cross_entropy(logits.reshape(S * U, S), target)
    with torch.no_grad():
        labels = torch.eye(S, dtype=torch.bool, device=embeds.device)[:, None, :].expand(S, U, S)
        eer, _ = equal_error_rate(sim.detach().reshape(-1).cpu().numpy(), labels.reshape(-1).cpu().numpy())
    return loss, eer


def train_step(model: SpeakerEncoder, optimizer: torch.optim.Optimizer, batch: torch.Tensor, S: int, U: int) -> tuple[float, float]:
    """One optimisation step on a (S * U, P, n_mels) batch; returns (loss, eer)."""
    model.train()
    embeds = model(batch).reshape(S, U, -1)  # (S, U, D)
    loss, eer = ge2e_loss(embeds, model.similarity_weight, model.similarity_bias)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    for p in (model.similarity_weight, model.similarity_bias):
        if p.grad is not None:
            p.grad.mul_(SIMILARITY_GRAD_SCALE)
    nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP_NORM)
    optimizer.step()
    return float(loss.detach()), eer


def _resume(out_dir: Path, dims: EncoderDims | None, lr: float) -> tuple[SpeakerEncoder, torch.optim.Optimizer, int] | None:
    ckpt_path = out_dir / CHECKPOINT_NAME
    if not ckpt_path.is_file():
        return None
    ckpt = read_checkpoint(ckpt_path, expect_kind="encoder")
    if dims is not None and ckpt.dims != dims:
        raise OptionsError(f"{ckpt_path} has dims {ckpt.dims}, not the requested {dims}; use another out_dir or resume=False")
    model = build_model(ckpt)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    step = int(ckpt.meta.get("step") or 0)
    optim_path = out_dir / OPTIM_NAME
    if optim_path.is_file():
        state = torch.load(optim_path, map_location="cpu", weights_only=True)
        if int(state.get("step", -1)) == step:
            optimizer.load_state_dict(state["optimizer"])
            for group in optimizer.param_groups:
                group["lr"] = lr
        else:  # an interrupted save: the weights are good, the Adam moments start afresh
            warnings.warn(f"{optim_path} is at step {state.get('step')}, the model at step {step}: "
                          "resuming with a fresh optimizer state", RuntimeWarning, stacklevel=3)
    return model, optimizer, step


def _save(model: SpeakerEncoder, optimizer: torch.optim.Optimizer, out_dir: Path, step: int, loss: float, eer: float,
          partial_frames: int) -> Path:
    optim_path = out_dir / OPTIM_NAME
    tmp = optim_path.with_name(optim_path.name + ".tmp")
    torch.save({"step": step, "optimizer": optimizer.state_dict()}, tmp)
    tmp.replace(optim_path)
    return save_model(model, out_dir / CHECKPOINT_NAME, "encoder", meta={"step": step, "loss": loss, "eer": eer, "trainer": "ge2e",
                                                                        "partial_frames": partial_frames})


def train_encoder(data_dir: str | Path, out_dir: str | Path, *, steps: int = 10_000, speakers_per_batch: int = 64,
                  utterances_per_speaker: int = 10, dims: EncoderDims | None = None, lr: float = 1e-4, seed: int = 0,
                  resume: bool = True, progress: bool = True, checkpoint_every: int = 1000, partial_frames: int = 160,
                  device: str | torch.device = "cpu") -> Path:
    """Train (or resume training) a GE2E speaker encoder on a speaker-folder dataset.

    ``data_dir`` is a LibriSpeech, VoxCeleb or flat ``root/<speaker>/*.wav`` folder (see
    :mod:`rtclone.train.data`). Training runs until the global step reaches ``steps``; with
    ``resume`` an existing ``out_dir/encoder.pt`` (and its optimizer state) is continued. ``dims``
    defaults to RTVC's (40, 256, 3, 256) for a new run and to the checkpoint's on resume. Returns the
    path of the rtclone checkpoint (``out_dir/encoder.pt``), written every ``checkpoint_every``
    steps and at the end.
    """
    from tqdm import tqdm

    for name, v in (("steps", steps), ("checkpoint_every", checkpoint_every), ("partial_frames", partial_frames)):
        if not isinstance(v, int) or v < 1:
            raise OptionsError(f"{name} must be a positive integer, got {v!r}")
    if not lr > 0:
        raise OptionsError(f"lr must be positive, got {lr!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    state = _resume(out_dir, dims, lr) if resume else None
    if state is None:
        torch.manual_seed(seed)
        model = SpeakerEncoder(dims or EncoderDims())
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        start = 0
        (out_dir / LOG_NAME).unlink(missing_ok=True)
    else:
        model, optimizer, start = state
    model.to(device)
    ckpt_path = out_dir / CHECKPOINT_NAME
    if start >= steps:
        return ckpt_path if ckpt_path.is_file() else _save(model, optimizer, out_dir, start, float("nan"), float("nan"), partial_frames)

    store = MelStore(out_dir / "mel_cache")
    mels = load_speaker_mels(speaker_files(data_dir), store, progress=progress)
    sampler = GE2EBatchSampler(mels, speakers_per_batch, utterances_per_speaker, partial_frames, seed=seed)
    if sampler.n_mels != model.dims.n_mels:
        raise OptionsError(f"the data has {sampler.n_mels} mel channels, the model {model.dims.n_mels}")

    S, U = speakers_per_batch, utterances_per_speaker
    loss = eer = float("nan")
    bar = tqdm(range(start, steps), initial=start, total=steps, desc="ge2e", unit="step", disable=not progress)
    with open(out_dir / LOG_NAME, "a", encoding="utf-8") as log:
        for step in bar:
            batch = torch.from_numpy(sampler.sample(step)).to(device)  # (S * U, P, n_mels)
            t0 = time.perf_counter()
            loss, eer = train_step(model, optimizer, batch, S, U)
            log.write(json.dumps({"step": step + 1, "loss": loss, "eer": eer, "w": float(model.similarity_weight.detach()),
                                  "b": float(model.similarity_bias.detach()), "seconds": time.perf_counter() - t0}) + "\n")
            bar.set_postfix(loss=f"{loss:.3f}", eer=f"{eer:.3f}")
            if (step + 1) % checkpoint_every == 0 and step + 1 < steps:
                log.flush()
                _save(model, optimizer, out_dir, step + 1, loss, eer, partial_frames)
    model.eval()
    return _save(model, optimizer, out_dir, steps, loss, eer, partial_frames)


def read_log(out_dir: str | Path) -> list[dict[str, float]]:
    """The per-step training log of ``out_dir`` (list of dicts: step, loss, eer, w, b, seconds)."""
    path = Path(out_dir) / LOG_NAME
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
