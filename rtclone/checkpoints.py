"""Checkpoints: rtclone's own versioned format, and import of RTVC and resemblyzer files.

rtclone format (a plain dict, loadable with ``torch.load(weights_only=True)``)::

    {"format": "rtclone", "version": 1, "kind": "encoder"|"synthesizer"|"vocoder",
     "dims": {...dataclass fields...}, "model_state": state_dict, "meta": {...}}

RTVC / resemblyzer training checkpoints are ``{"model_state": ..., "optimizer_state": ..., ...}``;
their kind is recognised from tensor names and their dims are read off tensor shapes by each model
module's ``<Dims>.from_rtvc_state_dict``. Our modules use RTVC's parameter names, so those state
dicts load strictly. Loading never depends on file names.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointError

FORMAT_VERSION = 1

# kind -> (module, model class, dims class); resolved lazily so importing this module is cheap.
MODEL_CLASSES: dict[str, tuple[str, str, str]] = {
    "encoder": ("rtclone.encoder", "SpeakerEncoder", "EncoderDims"),
    "synthesizer": ("rtclone.synthesizer", "Tacotron", "SynthesizerDims"),
    "vocoder": ("rtclone.vocoder", "WaveRNN", "VocoderDims"),
    "inverter": ("rtclone.mel_inverter", "MelInverter", "InverterDims"),
}

# Tensor names that identify an RTVC state dict of each kind.
_RTVC_SIGNATURES: dict[str, tuple[str, ...]] = {
    "encoder": ("lstm.weight_ih_l0", "linear.weight", "similarity_weight"),
    "synthesizer": ("encoder.embedding.weight", "decoder.attn_rnn.weight_ih", "postnet.rnn.weight_ih_l0"),
    "vocoder": ("upsample.resnet.conv_in.weight", "rnn1.weight_ih_l0", "fc3.weight"),
}


@dataclass
class Checkpoint:
    """What a checkpoint file holds, whatever its format."""

    kind: str  # "encoder" | "synthesizer" | "vocoder" | "inverter"
    format: str  # "rtclone" | "rtvc" | "resemblyzer"
    dims: Any  # the model's dims dataclass
    model_state: dict[str, torch.Tensor]
    meta: dict[str, Any]
    path: Path | None = None


def _classes(kind: str) -> tuple[type, type]:
    if kind not in MODEL_CLASSES:
        raise CheckpointError(f"unknown model kind {kind!r} (expected one of {sorted(MODEL_CLASSES)})")
    mod_name, cls_name, dims_name = MODEL_CLASSES[kind]
    mod = importlib.import_module(mod_name)
    return getattr(mod, cls_name), getattr(mod, dims_name)


def resemblyzer_weights_path() -> Path:
    """Path of the pretrained GE2E weights shipped inside the installed ``resemblyzer`` package."""
    spec = importlib.util.find_spec("resemblyzer")
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError("the 'resemblyzer' package is not installed: it ships the pretrained encoder weights")
    path = Path(list(spec.submodule_search_locations)[0]) / "pretrained.pt"
    if not path.is_file():
        raise CheckpointError(f"resemblyzer is installed but {path} is missing")
    return path


def _detect_kind(state: dict[str, Any]) -> str | None:
    for kind, keys in _RTVC_SIGNATURES.items():
        if all(k in state for k in keys):
            return kind
    return None


def read_checkpoint(path: str | Path, expect_kind: str | None = None) -> Checkpoint:
    """Read a checkpoint of any supported format (safely: ``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means an unusable file
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from exc
    ckpt = parse_checkpoint(obj, source=str(path))
    ckpt.path = path
    if ckpt.format == "rtvc" and ckpt.kind == "encoder":
        from .export import sha256_file  # lazy: importing checkpoints stays light

        try:
            if sha256_file(path) == sha256_file(resemblyzer_weights_path()):
                ckpt.format = "resemblyzer"
        except CheckpointError:
            pass
    if expect_kind is not None and ckpt.kind != expect_kind:
        raise CheckpointError(f"{path}: holds a {ckpt.kind} checkpoint, expected a {expect_kind}")
    return ckpt


def parse_checkpoint(obj: Any, source: str = "<object>") -> Checkpoint:
    """Interpret an already-loaded checkpoint object."""
    if not isinstance(obj, dict):
        raise CheckpointError(f"{source}: expected a dict checkpoint, got {type(obj).__name__}")
    if obj.get("format") == "rtclone":
        version = obj.get("version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise CheckpointError(f"{source}: rtclone checkpoint version {version!r} is not supported (max {FORMAT_VERSION})")
        kind = obj.get("kind")
        _, dims_cls = _classes(kind)
        try:
            dims = dims_from_dict(dims_cls, obj["dims"])
        except (KeyError, TypeError) as exc:
            raise CheckpointError(f"{source}: bad dims in rtclone checkpoint: {exc}") from exc
        return Checkpoint(kind, "rtclone", dims, obj["model_state"], dict(obj.get("meta") or {}))
    state = obj.get("model_state")
    if not isinstance(state, dict):
        raise CheckpointError(f"{source}: no 'model_state' dict: not an rtclone, RTVC or resemblyzer checkpoint")
    kind = _detect_kind(state)
    if kind is None:
        raise CheckpointError(f"{source}: unrecognised model_state layout (not an RTVC encoder, synthesizer or vocoder)")
    _, dims_cls = _classes(kind)
    try:
        dims = dims_cls.from_rtvc_state_dict(state)
    except (KeyError, ValueError, IndexError) as exc:
        raise CheckpointError(f"{source}: cannot read {kind} dims from tensor shapes: {exc}") from exc
    meta = {"step": _as_int(obj.get("step", state.get("step")))}
    return Checkpoint(kind, "rtvc", dims, state, meta)


def _as_int(v: Any) -> int | None:
    if isinstance(v, torch.Tensor):
        return int(v.reshape(-1)[0]) if v.numel() else None
    return int(v) if isinstance(v, (int, float)) else None


def dims_from_dict(dims_cls: type, d: dict[str, Any]) -> Any:
    """Build a dims dataclass from a dict, turning lists back into tuples."""
    fields = {f.name for f in dataclasses.fields(dims_cls)}
    unknown = set(d) - fields
    if unknown:
        raise TypeError(f"unknown dims fields {sorted(unknown)}")
    return dims_cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def build_model(ckpt: Checkpoint, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Instantiate the model of a checkpoint and load its weights strictly; eval mode."""
    model_cls, _ = _classes(ckpt.kind)
    model = model_cls(ckpt.dims)
    try:
        model.load_state_dict(ckpt.model_state, strict=True)
    except RuntimeError as exc:
        src = ckpt.path or "checkpoint"
        raise CheckpointError(f"{src}: weights do not fit a {ckpt.kind} with dims {ckpt.dims}: {exc}") from exc
    return model.to(device).eval()


def load_model(path: str | Path, kind: str | None = None, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Load any supported checkpoint file into our model class (eval mode)."""
    return build_model(read_checkpoint(path, expect_kind=kind), device)


def load_encoder(path: str | Path | None = None, device: str | torch.device = "cpu") -> torch.nn.Module:
    """The speaker encoder: ``path``, or by default resemblyzer's shipped pretrained weights."""
    return load_model(path if path is not None else resemblyzer_weights_path(), "encoder", device)


def checkpoint_dict(model: torch.nn.Module, kind: str, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """The rtclone checkpoint dict of a model (``model.dims`` must be its dims dataclass)."""
    _classes(kind)
    dims = model.dims
    return {
        "format": "rtclone",
        "version": FORMAT_VERSION,
        "kind": kind,
        "dims": {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(dims).items()},
        "model_state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "meta": dict(meta or {}),
    }


def save_model(model: torch.nn.Module, path: str | Path, kind: str, meta: dict[str, Any] | None = None) -> Path:
    """Save a model in rtclone's format, atomically (write to a temp file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(checkpoint_dict(model, kind, meta), tmp)
    tmp.replace(path)
    return path


def describe(path: str | Path) -> dict[str, Any]:
    """What ``rtclone info`` prints: kind, format, dims, parameter count and meta."""
    ckpt = read_checkpoint(path)
    n_params = sum(int(t.numel()) for t in ckpt.model_state.values() if isinstance(t, torch.Tensor) and t.is_floating_point())
    return {
        "path": str(path),
        "kind": ckpt.kind,
        "format": ckpt.format,
        "dims": dataclasses.asdict(ckpt.dims),
        "n_tensors": len(ckpt.model_state),
        "n_values": n_params,
        "meta": ckpt.meta,
    }
