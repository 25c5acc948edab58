"""WaveRNN training: random segments of (wav, mel) pairs, RAW cross-entropy or MoL loss, gradual pruning.

Data are pairs ``(wav, mel)``: ``wav`` a float array at 16 kHz, an audio path or a ``.npy`` of
float samples (a prepared set's trimmed audio); ``mel`` a synthesizer mel (80, T), a ``.npy`` path
(ground truth or GTA, e.g. from ``rtclone train gta``) or ``None`` (ground truth, computed with
``audio.synth_mel``). Like RTVC, the target is the pre-emphasised wav, quantised to mu-law labels
(RAW) or 16-bit linear values (MoL); sample ``t * hop`` lines up with mel frame ``t``. An LPC
vocoder (``dims.lpc_order > 0``) learns the excitation of that wav under the mel's predictor instead
(:func:`rtclone.lpc.excitation`).

Under torchrun (``python -m torch.distributed.run --nproc_per_node N -m rtclone.train.vocoder``)
each process draws its own segments and DDP averages the gradients (gloo on CPU); rank 0 writes.
``bf16=True`` runs the passes under CPU bfloat16 autocast (the weights, Adam and the loss stay
float32): on a CPU with AVX512-BF16 a step costs 0.69x the float32 one at 256 wide, 0.51x at 512
(``benchmarks/train_vocoder.py``).
"""

from __future__ import annotations

import argparse
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F

from .. import audio, lpc
from ..checkpoints import read_checkpoint, build_model, save_model
from ..errors import AudioError, InputShapeError, OptionsError
from ..sparse import PruneSchedule, apply_masks, measure_sparsity, prune_masks
from ..vocoder import MOL_BITS, MOL_CLASSES, VocoderDims, WaveRNN
from ..vocoder_gen import check_mel
from .dist import distributed, print_report

CHECKPOINT_NAME = "vocoder.pt"
OPTIMIZER_NAME = "vocoder_optimizer.pt"


@dataclass
class _Utterance:
    mel: np.ndarray  # (80, T) synthesizer-scale mel
    target: np.ndarray  # (T * hop,) int32 labels (RAW) or 16-bit labels (MoL); half the memory of int64


def mol_loss(params: torch.Tensor, y: torch.Tensor, num_classes: int = 2**MOL_BITS, log_scale_min: float = -7.0) -> torch.Tensor:
    """Mean negative log-likelihood of ``y`` (B, T) in [-1, 1] under a discretised mixture of logistics.

    params (B, T, 30): 10 mixture logits, 10 means, 10 log scales (clamped at ``log_scale_min``).
    The value ``y`` stands for the bin [y - 1/(n-1), y + 1/(n-1)] of ``n = num_classes`` levels; the
    end bins extend to -inf / +inf. Where a bin's mass underflows, the density at its centre times
    the bin width is used instead.
    """
    nmix = MOL_CLASSES // 3
    if params.shape[-1] != MOL_CLASSES or params.shape[:-1] != y.shape:
        raise InputShapeError(f"mol_loss: params {tuple(params.shape)} do not match targets {tuple(y.shape)}")
    logit_probs = params[..., :nmix]
    means = params[..., nmix : 2 * nmix]
    log_scales = params[..., 2 * nmix :].clamp(min=log_scale_min)
    y = y.unsqueeze(-1)  # (B, T, 1)
    inv_s = torch.exp(-log_scales)
    half_bin = 1.0 / (num_classes - 1)
    upper = inv_s * (y - means + half_bin)
    lower = inv_s * (y - means - half_bin)
    centre = inv_s * (y - means)
    log_cdf_upper = upper - F.softplus(upper)  # log sigmoid(upper): lowest bin
    log_sf_lower = -F.softplus(lower)  # log (1 - sigmoid(lower)): highest bin
    mass = torch.sigmoid(upper) - torch.sigmoid(lower)
    log_pdf_centre = centre - log_scales - 2.0 * F.softplus(centre)
    log_mid = torch.where(
        mass > 1e-5, torch.log(mass.clamp(min=1e-12)), log_pdf_centre - math.log((num_classes - 1) / 2.0)
    )
    log_p = torch.where(y < -0.999, log_cdf_upper, torch.where(y > 0.999, log_sf_lower, log_mid))
    log_p = log_p + torch.log_softmax(logit_probs, -1)
    return -torch.logsumexp(log_p, -1).mean()


def _as_wav(item: Any) -> np.ndarray:
    if isinstance(item, (str, Path)) and str(item).endswith(".npy"):
        item = np.load(item, allow_pickle=False)  # a prepared set's audio/<id>.npy (16 kHz float samples)
    elif isinstance(item, (str, Path)):
        return audio.load_audio(item)
    wav = np.asarray(item, dtype=np.float32)
    if wav.ndim != 1 or wav.size == 0 or not np.isfinite(wav).all():
        raise AudioError(f"training wav must be finite mono audio, got shape {wav.shape}")
    return wav


def vocoder_pairs(wav_dir: str | Path, mel_dir: str | Path | None = None) -> list[tuple[Path, Path | None]]:
    """(wav, mel) pairs for ``train_vocoder`` from a folder of audio files (searched recursively).

    With ``mel_dir`` (e.g. GTA mels), each wav pairs with ``mel_dir/<stem>.npy`` and wavs without
    one are skipped; without it, mels are computed from the audio (ground truth). A built-in corpus
    (a folder with ``manifest.json``) gives its training split only: held-out voices and sentences
    stay out of training. An ``rtclone train gta`` export (``metadata.json`` of format
    ``rtclone-gta``) gives its GTA mels with the trimmed audio they were aligned to (a corpus's
    untrimmed wavs would not line up with them); ``mel_dir`` must then be None.
    """
    from .synthesizer import read_gta_export

    gta = read_gta_export(wav_dir)
    if gta is not None:
        if mel_dir is not None:
            raise OptionsError(f"{wav_dir} is a GTA export (it pairs its own mels and audio): give no mel folder")
        return [(row["audio"], row["mel"]) for row in gta]
    if (Path(wav_dir) / "manifest.json").is_file():
        from ..corpus import list_utterances

        wavs = sorted(Path(u["path"]) for u in list_utterances(Path(wav_dir), "train"))
    else:
        wavs = sorted(p for ext in ("wav", "flac", "mp3", "ogg") for p in Path(wav_dir).rglob(f"*.{ext}"))
    if mel_dir is None:
        return [(w, None) for w in wavs]
    mels = {p.stem: p for p in Path(mel_dir).rglob("*.npy")}
    return [(w, mels[w.stem]) for w in wavs if w.stem in mels]


def prepare_utterance(wav: Any, mel: Any, dims: VocoderDims) -> _Utterance:
    """One (wav, mel) pair -> mel (80, T) and quantised pre-emphasised target of T * hop samples."""
    wav = _as_wav(wav)
    if mel is None:
        mel = audio.synth_mel(wav)
    elif isinstance(mel, (str, Path)):
        mel = np.load(mel, allow_pickle=False)
    mel = check_mel(mel, dims.feat_dims).numpy()
    n = mel.shape[1] * dims.hop_length
    sig = audio.pre_emphasis(wav)
    sig = np.pad(sig, (0, max(0, n - len(sig))))[:n]
    if dims.lpc_order:  # the excitation under the mel's own predictor (rtclone.lpc)
        sig = lpc.excitation(sig, *lpc.mel_lpc(mel, dims.lpc_order), dims.hop_length)
    sig = np.clip(sig, -1.0, 1.0)
    if dims.mode == "MOL":
        target = np.round(audio.float_to_label(sig, MOL_BITS))
    elif dims.mu_law:
        target = audio.mulaw_encode(sig, dims.bits)
    else:
        target = np.round(audio.float_to_label(sig, dims.bits))
    return _Utterance(mel, np.asarray(target).astype(np.int32))


def sample_batch(
    utts: list[_Utterance], dims: VocoderDims, batch_size: int, seq_len: int, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random segments: x (B, S) inputs in [-1, 1], mels (B, 80, seq_len + 2 pad), y (B, S) targets (S = seq_len * hop)."""
    hop, pad = dims.hop_length, dims.pad
    win = seq_len + 2 * pad
    lengths = np.array([u.mel.shape[1] - win + 1 for u in utts], dtype=np.float64)
    pick = rng.choice(len(utts), size=batch_size, p=lengths / lengths.sum())
    mels, labels = [], []
    for i in pick:
        u = utts[i]
        off = int(rng.integers(0, u.mel.shape[1] - win + 1))
        mels.append(u.mel[:, off : off + win])
        start = (off + pad) * hop
        labels.append(u.target[start : start + seq_len * hop + 1])
    lab = torch.from_numpy(np.stack(labels).astype(np.int64))  # (B, S + 1)
    bits = MOL_BITS if dims.mode == "MOL" else dims.bits
    x = audio.label_to_float(lab[:, :-1], bits)
    y = audio.label_to_float(lab[:, 1:], bits) if dims.mode == "MOL" else lab[:, 1:]
    return x, torch.from_numpy(np.stack(mels)), y


def vocoder_loss(model: WaveRNN, x: torch.Tensor, mels: torch.Tensor, y: torch.Tensor, *, net: Any = None) -> torch.Tensor:
    """Cross-entropy over labels (RAW) or the discretised MoL NLL (MOL) of a teacher-forced pass.

    ``net`` (e.g. ``model`` wrapped in DDP) runs the pass when given. The loss is taken in float32
    even when the pass ran under bfloat16 autocast.
    """
    out = (net or model)(x, mels).float()  # (B, S, n_classes)
    if model.dims.mode == "RAW":
        return F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))  # rows: no transposed copy
    return mol_loss(out, y)


def validation_loss(model: WaveRNN, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor], bf16: bool = False) -> float:
    """The loss of a fixed held-out batch in eval mode (batch-norm running statistics), no gradients."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return float(vocoder_loss(model, *batch))
    finally:
        model.train(was_training)


def _write_sample(model: WaveRNN, utt: _Utterance, path: Path, seconds: float) -> Path:
    frames = max(2, min(utt.mel.shape[1], int(seconds * model.dims.sample_rate / model.dims.hop_length) + 1))
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        wav = model.generate(utt.mel[:, :frames], backend="auto", seed=0)
    model.train()
    path.parent.mkdir(parents=True, exist_ok=True)
    audio.save_wav(path, wav, model.dims.sample_rate)
    return path


def train_vocoder(
    data: Iterable[tuple[Any, Any]],
    out_dir: str | Path,
    *,
    dims: VocoderDims | None = None,
    steps: int = 1000,
    batch_size: int = 16,
    seq_len: int = 5,
    lr: float = 1e-4,
    prune: PruneSchedule | None = None,
    seed: int = 0,
    resume: bool = True,
    progress: bool = True,
    checkpoint_every: int = 1000,
    sample_every: int | None = None,
    sample_seconds: float = 1.0,
    grad_clip: float = 4.0,
    log: Callable[[str], None] | None = None,
    bf16: bool = False,
    val: Iterable[tuple[Any, Any]] | None = None,
    val_segments: int = 64,
) -> dict[str, Any]:
    """Train (or resume) a WaveRNN on (wav, mel) pairs; checkpoints go to ``out_dir``.

    ``steps`` is the total step count (a resumed run continues up to it); ``seq_len`` is in hops
    (RTVC: 5). Saves ``vocoder.pt`` (rtclone format, ``meta`` with step and loss) plus the optimizer
    state for resuming every ``checkpoint_every`` steps and at the end, and a generated
    ``samples/step_N.wav`` from the first utterance every ``sample_every`` steps. With ``val``
    (held-out pairs), ``log.jsonl`` also gets ``val_loss``: the loss of ``val_segments`` fixed
    held-out segments (drawn once from ``seed``), at every checkpoint. Under torchrun every process
    trains on its own batch of ``batch_size`` (the global batch is ``batch_size`` × processes).
    Returns the final step, the per-step losses of this run (rank 0's), the sparsity, the paths
    written and the number of processes.
    """
    for name, v in (("steps", steps), ("batch_size", batch_size), ("seq_len", seq_len), ("checkpoint_every", checkpoint_every)):
        if not isinstance(v, int) or v < 1:
            raise OptionsError(f"{name} must be a positive integer, got {v!r}")
    if sample_every is not None and (not isinstance(sample_every, int) or sample_every < 1):
        raise OptionsError(f"sample_every must be None or a positive integer, got {sample_every!r}")
    out_dir = Path(out_dir)
    ckpt_path, opt_path = out_dir / CHECKPOINT_NAME, out_dir / OPTIMIZER_NAME
    rank, world, own_pg = distributed()
    torch.manual_seed(seed)  # the same initial weights in every process
    if resume and ckpt_path.is_file():
        model = build_model(read_checkpoint(ckpt_path, expect_kind="vocoder"))
        if dims is not None and dims != model.dims:
            raise OptionsError(f"{ckpt_path} holds dims {model.dims}, asked for {dims}")
    else:
        model = WaveRNN(dims or VocoderDims())
    d = model.dims
    model.train()
    utts = [prepare_utterance(w, m, d) for w, m in data]
    utts = [u for u in utts if u.mel.shape[1] >= seq_len + 2 * d.pad]
    if not utts:
        raise InputShapeError(f"no utterance has the {seq_len + 2 * d.pad} mel frames a training segment needs")
    val_batch = None
    if val is not None:
        val_utts = [u for u in (prepare_utterance(w, m, d) for w, m in val) if u.mel.shape[1] >= seq_len + 2 * d.pad]
        if not val_utts:
            raise InputShapeError("no held-out utterance is long enough for a validation segment")
        val_batch = sample_batch(val_utts, d, val_segments, seq_len, np.random.default_rng([seed, 7919]))
    net: Any = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    if resume and opt_path.is_file() and ckpt_path.is_file():
        opt.load_state_dict(torch.load(opt_path, map_location="cpu", weights_only=True)["optimizer"])
        for group in opt.param_groups:  # load_state_dict brings back the saved rate: this run's lr wins
            group["lr"] = lr
    step = int(model.step.item())
    masks = prune_masks(model, prune.sparsity(step), prune.block, prune.names) if prune and step > prune.start else {}
    losses: list[float] = []
    samples: list[str] = []
    bar = None
    if progress and rank == 0:
        from tqdm import tqdm

        bar = tqdm(total=steps, initial=min(step, steps), desc="vocoder", unit="step")

    logged = 0  # losses already summarised in log.jsonl

    def save(loss: float | None) -> None:
        nonlocal logged
        if rank != 0:
            return
        save_model(model, ckpt_path, "vocoder", meta={"step": step, "loss": loss, "lr": lr, "seed": seed})
        if losses[logged:]:
            row = {"step": step, "loss": float(np.mean(losses[logged:])), "steps": len(losses) - logged,
                   "sparsity": measure_sparsity(model, prune.block)["total"] if prune else 0.0}
            if val_batch is not None:
                row["val_loss"] = validation_loss(model, val_batch, bf16)
            with open(out_dir / "log.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
            logged = len(losses)
        tmp = opt_path.with_name(opt_path.name + ".tmp")
        torch.save({"optimizer": opt.state_dict(), "step": step}, tmp)
        tmp.replace(opt_path)

    while step < steps:
        # batches depend on (seed, step[, rank]) only: resumable
        rng = np.random.default_rng([seed, step] if world == 1 else [seed, step, rank])
        x, mels, y = sample_batch(utts, d, batch_size, seq_len, rng)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = vocoder_loss(model, x, mels, y, net=net)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        opt.step()
        step += 1
        model.step += 1
        if prune is not None and prune.due(step):
            masks = prune_masks(model, prune.sparsity(step), prune.block, prune.names)
        if masks:
            apply_masks(model, masks)
        losses.append(loss.item())
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
        if log is not None:
            log(f"step {step} loss {losses[-1]:.5f}")
        if step % checkpoint_every == 0 or step == steps:
            save(losses[-1])
        if rank == 0 and sample_every is not None and (step % sample_every == 0 or step == steps):
            samples.append(str(_write_sample(model, utts[0], out_dir / "samples" / f"step_{step}.wav", sample_seconds)))
    if bar is not None:
        bar.close()
    if not losses and not ckpt_path.is_file():
        save(None)
    if own_pg:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
    return {
        "step": step,
        "losses": losses,
        "checkpoint": str(ckpt_path),
        "optimizer": str(opt_path),
        "samples": samples,
        "sparsity": measure_sparsity(model, prune.block) if prune else None,
        "world_size": world,
    }


# ---- torchrun entry point ------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """``torchrun --nproc_per_node N -m rtclone.train.vocoder DATA OUT [...]`` (the options of ``rtclone train vocoder``)."""
    from ..cli_train import add_train_vocoder_args, vocoder_run_options

    p = argparse.ArgumentParser(prog="python -m rtclone.train.vocoder", description=main.__doc__)
    add_train_vocoder_args(p)
    a = p.parse_args(argv)
    res = train_vocoder(**vocoder_run_options(a))
    print_report(res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
