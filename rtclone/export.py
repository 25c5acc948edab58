"""Export the models to ONNX or TorchScript artifacts that :mod:`rtclone.runners` serves.

:func:`export_models` writes one artifact per component plus ``manifest.json``:

- ``encoder``: partial mels (B, T, n_mels) → unit-norm embeddings (B, embed).
- ``text_encoder``: symbol ids (B, T_text) + speaker embedding (B, spk) + the two prenet dropout
  masks → memory (B, T_text, enc + spk) (the encoder output with the speaker concatenated) and
  the attention keys (B, T_text, A) (its projection).
- ``decoder_step``: one Tacotron decoder step with its recurrent and attention state as explicit
  named inputs (``prev_frame, attn_hidden, rnn1_h, rnn1_c, rnn2_h, rnn2_c, context, cumulative``)
  and outputs (the same names + ``_out``), for the reduction factor r the model has at export.
- ``postnet``: decoder mels (B, n_mels, T) → postnet mels (B, n_mels, T).
- ``vocoder_cond``: the WaveRNN upsample network: mel window (B, feat, n + 2 pad) (synthesizer
  range) → upsampled mel (B, n · hop, feat) and aux (B, n · hop, res_out).
- ``vocoder_step``: one WaveRNN sample step (prev sample, conditioning, h1, h2 → logits, h1, h2)
  for runtimes that want it; rtclone itself runs the sample loop on its native kernels, which
  read the loop's weights from
- ``inverter``: the mel inverter Griffin-Lim runs on (:mod:`rtclone.mel_inverter`): mels (B, 80, T) →
  normalised log magnitudes (B, 401, T - 2 context).
- ``vocoder_loop``: ``vocoder_loop.npz`` (numpy, no pickle) with I, rnn1, rnn2, fc1-3 under
  WaveRNN's state-dict names, whatever the format.

``manifest.json`` lists the components with their file, SHA-256, kind, dims and input/output
names, plus the format, backend, opset, rtclone version, sample rate and ``ARTIFACT_VERSION``.

Tacotron's prenet dropout stays on at inference, so the dropout keep-masks are graph inputs:
deterministic, and drawn by the runner from a seeded generator in the model's order.
Every artifact carries its metadata (dims, rtclone version, sample rate, artifact version) inside
(ONNX ``metadata_props``; TorchScript ``_extra_files``). The wrappers below only call the model's
submodules; they hold no weights of their own (except r rows of ``mel_proj``, sliced once).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import __version__
from .audio import SAMPLE_RATE
from .errors import ArtifactError, BackendUnavailableError, OptionsError

OPSET = 17  # the ONNX opset every artifact is exported with


# ---- the artifact format (written here, read by rtclone.runners) ---------------------------------
ARTIFACT_VERSION = 1  # bump when names, shapes or semantics of any artifact change
MANIFEST = "manifest.json"
MANIFEST_FORMAT = "rtclone-artifacts"
METADATA_KEY = "rtclone"  # ONNX metadata_props key; TorchScript extra file "rtclone.json"
TS_EXTRA_FILE = "rtclone.json"
BACKENDS = ("onnx", "torchscript")
SUFFIX = {"onnx": ".onnx", "torchscript": ".ts"}

# The decoder's recurrent and attention state, in the order of the decoder-step inputs; the step
# returns each as "<name>_out".
DECODER_STATE = ("prev_frame", "attn_hidden", "rnn1_h", "rnn1_c", "rnn2_h", "rnn2_c", "context", "cumulative")

# component -> (kind of the source model, input names, output names)
COMPONENTS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "encoder": ("encoder", ("mels",), ("embeddings",)),
    "text_encoder": ("synthesizer", ("chars", "speaker", "prenet_mask1", "prenet_mask2"), ("memory", "keys")),
    "decoder_step": ("synthesizer",
                     DECODER_STATE + ("memory", "keys", "text_mask", "prenet_mask1", "prenet_mask2"),
                     ("mels", "stop_logit", "attention") + tuple(f"{n}_out" for n in DECODER_STATE)),
    "postnet": ("synthesizer", ("mels",), ("postnet_mels",)),
    "vocoder_cond": ("vocoder", ("mel_window",), ("upsampled_mel", "aux")),
    "vocoder_step": ("vocoder", ("prev_sample", "cond", "h1", "h2"), ("logits", "h1_out", "h2_out")),
    "inverter": ("inverter", ("mel",), ("log_mag",)),
    # the sample loop's weights (WaveRNN state-dict names) for the native kernels: a numpy .npz
    "vocoder_loop": ("vocoder", (), tuple(f"{layer}.{p}" for layer in ("I", "fc1", "fc2", "fc3") for p in ("weight", "bias"))
                     + tuple(f"{rnn}.{p}_l0" for rnn in ("rnn1", "rnn2") for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))),
}
NPZ_COMPONENTS = ("vocoder_loop",)  # stored as .npz whatever the backend
NPZ_META_KEY = "__rtclone__"


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_manifest(model_dir: str | Path) -> dict[str, Any]:
    """The checked manifest of an artifact directory. Raises ArtifactError naming the file."""
    path = Path(model_dir) / MANIFEST
    if not path.is_file():
        raise ArtifactError(f"{path}: manifest not found (not an rtclone export directory)")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{path}: unreadable manifest ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise ArtifactError(f"{path}: not an {MANIFEST_FORMAT} manifest")
    if manifest.get("artifact_version") != ARTIFACT_VERSION:
        raise ArtifactError(f"{path}: artifact version {manifest.get('artifact_version')!r}, "
                            f"this rtclone reads version {ARTIFACT_VERSION}: re-export the models")
    if manifest.get("backend") not in BACKENDS or not isinstance(manifest.get("components"), dict):
        raise ArtifactError(f"{path}: bad backend {manifest.get('backend')!r} or components")
    for name in manifest["components"]:
        if name not in COMPONENTS:
            raise ArtifactError(f"{path}: unknown component {name!r}")
    return manifest


def check_metadata(file: Path, meta: Any, component: str, entry: Mapping[str, Any],
                   expect_dims: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """Check an artifact's embedded metadata against its manifest entry and the expected dims."""
    if not isinstance(meta, dict):
        raise ArtifactError(f"{file}: no rtclone metadata inside the artifact")
    if meta.get("artifact_version") != ARTIFACT_VERSION:
        raise ArtifactError(f"{file}: artifact version {meta.get('artifact_version')!r}, expected {ARTIFACT_VERSION}")
    kind, inputs, outputs = COMPONENTS[component]
    if meta.get("component") != component or meta.get("kind") != kind:
        raise ArtifactError(f"{file}: holds {meta.get('component')!r} ({meta.get('kind')!r}), expected {component!r}")
    if tuple(meta.get("inputs", ())) != inputs or tuple(meta.get("outputs", ())) != outputs:
        raise ArtifactError(f"{file}: input/output names {meta.get('inputs')} → {meta.get('outputs')} "
                            f"differ from {list(inputs)} → {list(outputs)}")
    if meta.get("dims") != entry.get("dims"):
        raise ArtifactError(f"{file}: dims {meta.get('dims')} differ from the manifest's {entry.get('dims')}")
    if expect_dims is not None and kind in expect_dims:
        want = {k: list(v) if isinstance(v, tuple) else v for k, v in dict(expect_dims[kind]).items()}
        if meta["dims"] != want:
            raise ArtifactError(f"{file}: dims {meta['dims']} differ from the expected {kind} dims {want}")
    return meta


def load_npz_artifact(file: Path) -> tuple[dict[str, np.ndarray], Any]:
    """The arrays and the embedded metadata of an .npz artifact (no pickle)."""
    with np.load(file, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    raw = arrays.pop(NPZ_META_KEY, None)
    try:
        return arrays, json.loads(str(raw)) if raw is not None else None
    except ValueError as exc:
        raise ArtifactError(f"{file}: unreadable rtclone metadata ({exc})") from exc


def check_loop_shapes(file: Path, arrays: Mapping[str, np.ndarray], d: Mapping[str, Any]) -> None:
    """The vocoder-loop arrays must be the expected tensors with the shapes the dims give."""
    want = set(COMPONENTS["vocoder_loop"][2])
    if set(arrays) != want:
        raise ArtifactError(f"{file}: tensors {sorted(arrays)} differ from {sorted(want)}")
    R, aux = d["rnn_dims"], d["res_out_dims"] // 4
    n_out = 2 ** d["bits"] if d["mode"] == "RAW" else 30
    for key, shape in (("I.weight", (R, d["feat_dims"] + aux + 1)), ("rnn1.weight_hh_l0", (3 * R, R)),
                       ("fc3.weight", (n_out, d["fc_dims"]))):
        if tuple(arrays[key].shape) != shape:
            raise ArtifactError(f"{file}: {key} has shape {tuple(arrays[key].shape)}, dims say {shape}")


# ---- wrappers: named inputs/outputs around the models' submodules --------------------------------
def _masked_prenet(prenet: nn.Module, x: torch.Tensor, mask1: torch.Tensor, mask2: torch.Tensor) -> torch.Tensor:
    """The Tacotron prenet with explicit keep-masks (same arithmetic as ``dropout_always``)."""
    scale = 1.0 / (1.0 - prenet.p) if prenet.p > 0.0 else 1.0
    x = F.relu(prenet.fc1(x)) * mask1 * scale
    return F.relu(prenet.fc2(x)) * mask2 * scale


class EncoderExport(nn.Module):
    """mels (B, T, n_mels) → embeddings (B, embed)."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        return self.encoder(mels)


class TextEncoderExport(nn.Module):
    """chars (B, T_text) long, speaker (B, spk), masks (B, T_text, enc) ×2 → memory, keys."""

    def __init__(self, tacotron: nn.Module) -> None:
        super().__init__()
        self.encoder = tacotron.encoder
        self.encoder_proj = tacotron.encoder_proj

    def forward(self, chars: torch.Tensor, speaker: torch.Tensor, prenet_mask1: torch.Tensor,
                prenet_mask2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        enc = self.encoder
        x = _masked_prenet(enc.pre_net, enc.embedding(chars), prenet_mask1, prenet_mask2)  # (B, T, enc)
        x = enc.cbhg(x.transpose(1, 2))  # (B, T, enc)
        spk = speaker.unsqueeze(1).expand(-1, x.size(1), -1)  # (B, T, spk)
        memory = torch.cat([x, spk], dim=2)  # (B, T, enc + spk)
        return memory, self.encoder_proj(memory)  # keys (B, T, A)


class DecoderStepExport(nn.Module):
    """One decoder step with explicit state (mirrors ``tacotron_layers.Decoder.step``)."""

    def __init__(self, tacotron: nn.Module) -> None:
        super().__init__()
        self.decoder = tacotron.decoder
        self.r = tacotron.r
        self.n_mels = tacotron.dims.n_mels
        mel_weight = tacotron.decoder.mel_weight(self.r)  # (n_mels · r, lstm); None for a quantized decoder
        if mel_weight is None:
            raise OptionsError("the decoder is quantized (quantize_decoder_int8): export the float32 model")
        self.register_buffer("mel_weight", mel_weight.detach().clone().contiguous())

    def forward(self, prev_frame: torch.Tensor, attn_hidden: torch.Tensor, rnn1_h: torch.Tensor, rnn1_c: torch.Tensor,
                rnn2_h: torch.Tensor, rnn2_c: torch.Tensor, context: torch.Tensor, cumulative: torch.Tensor,
                memory: torch.Tensor, keys: torch.Tensor, text_mask: torch.Tensor, prenet_mask1: torch.Tensor,
                prenet_mask2: torch.Tensor) -> tuple[torch.Tensor, ...]:
        dec = self.decoder
        pre = _masked_prenet(dec.prenet, prev_frame, prenet_mask1, prenet_mask2)  # (B, prenet)
        attn_hidden = dec.attn_rnn(torch.cat([context, pre], dim=1), attn_hidden)  # (B, A)
        scores = dec.attn_net(keys, attn_hidden, cumulative, text_mask)  # (B, T_text)
        context = torch.bmm(scores.unsqueeze(1), memory).squeeze(1)  # (B, ctx)
        x = dec.rnn_input(torch.cat([context, attn_hidden], dim=1))  # (B, lstm)
        h1, c1 = dec.res_rnn1(x, (rnn1_h, rnn1_c))
        x = x + h1
        h2, c2 = dec.res_rnn2(x, (rnn2_h, rnn2_c))
        x = x + h2
        mels = F.linear(x, self.mel_weight).reshape(-1, self.n_mels, self.r)  # (B, n_mels, r)
        stop = dec.stop_proj(torch.cat([x, context], dim=1)).squeeze(1)  # (B,)
        return (mels, stop, scores, mels[:, :, -1], attn_hidden, h1, c1, h2, c2, context, cumulative + scores)


class PostnetExport(nn.Module):
    """Decoder mels (B, n_mels, T) → postnet mels (B, n_mels, T)."""

    def __init__(self, tacotron: nn.Module) -> None:
        super().__init__()
        self.tacotron = tacotron

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        return self.tacotron.postnet_mel(mels)


class VocoderCondExport(nn.Module):
    """Mel window (B, feat, n + 2 pad) in [-4, 4] → upsampled mel (B, n·hop, feat), aux (B, n·hop, res_out)."""

    def __init__(self, vocoder: nn.Module) -> None:
        super().__init__()
        from .vocoder import MEL_SCALE

        self.upsample = vocoder.upsample
        self.scale = MEL_SCALE

    def forward(self, mel_window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.upsample(mel_window / self.scale)


class VocoderStepExport(nn.Module):
    """One WaveRNN step: prev_sample (B, 1), cond (B, feat + res_out), h1, h2 (B, R) → logits, h1, h2."""

    def __init__(self, vocoder: nn.Module) -> None:
        super().__init__()
        self.vocoder = vocoder

    def forward(self, prev_sample: torch.Tensor, cond: torch.Tensor, h1: torch.Tensor,
                h2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        from .vocoder import gru_cell

        v = self.vocoder
        m, a1, a2, a3, a4 = v._split(cond)
        i = v.I(torch.cat([prev_sample, m, a1], dim=1))  # (B, R)
        g1, g2 = v.rnn1, v.rnn2
        h1 = gru_cell(i, h1, g1.weight_ih_l0, g1.weight_hh_l0, g1.bias_ih_l0, g1.bias_hh_l0)
        x1 = i + h1
        h2 = gru_cell(torch.cat([x1, a2], dim=1), h2, g2.weight_ih_l0, g2.weight_hh_l0, g2.bias_ih_l0, g2.bias_hh_l0)
        x2 = x1 + h2
        f1 = F.relu(v.fc1(torch.cat([x2, a3], dim=1)))
        f2 = F.relu(v.fc2(torch.cat([f1, a4], dim=1)))
        return v.fc3(f2), h1, h2  # (B, n_classes), (B, R), (B, R)


# ---- example inputs and dynamic axes ------------------------------------------------------------
def _examples(component: str, model: nn.Module) -> tuple[torch.Tensor, ...]:
    """Small example inputs to trace with (batch 2; sizes unlike any real call)."""
    g = torch.Generator().manual_seed(0)
    rn = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    d = model.dims
    if component == "encoder":
        return (rn(2, 24, d.n_mels).abs(),)
    if component == "text_encoder":
        return (torch.randint(1, d.num_chars, (2, 9), generator=g), rn(2, d.speaker_embedding_size),
                torch.ones(2, 9, d.encoder_dims), torch.ones(2, 9, d.encoder_dims))
    if component == "decoder_step":
        ctx, B, T = d.encoder_dims + d.speaker_embedding_size, 2, 9
        state = [rn(B, d.n_mels), rn(B, d.decoder_dims), rn(B, d.lstm_dims), rn(B, d.lstm_dims), rn(B, d.lstm_dims),
                 rn(B, d.lstm_dims), rn(B, ctx), torch.rand(B, T, generator=g)]
        return tuple(state) + (rn(B, T, ctx), rn(B, T, d.decoder_dims), torch.ones(B, T, dtype=torch.bool),
                               torch.ones(B, d.prenet_dims), torch.ones(B, d.prenet_dims))
    if component == "postnet":
        return (rn(2, d.n_mels, 12),)
    if component == "vocoder_cond":
        return (rn(2, d.feat_dims, 3 + 2 * d.pad),)
    if component == "vocoder_step":
        return (rn(2, 1).clamp(-1, 1), rn(2, d.cond_dims), rn(2, d.rnn_dims), rn(2, d.rnn_dims))
    if component == "inverter":
        return (rn(2, d.n_mels, 7 + 2 * d.context),)
    raise OptionsError(f"unknown component {component!r}")


_TEXT_AXIS = {"chars", "prenet_mask1", "prenet_mask2", "memory", "keys", "cumulative", "text_mask", "attention", "cumulative_out"}


def _dynamic_axes(component: str) -> dict[str, dict[int, str]]:
    """Batch on every tensor; time on mels/windows; text length on the text-side tensors."""
    _, inputs, outputs = COMPONENTS[component]
    axes: dict[str, dict[int, str]] = {n: {0: "batch"} for n in inputs + outputs}
    if component == "encoder":
        axes["mels"][1] = "frames"
    elif component == "postnet":
        axes["mels"][2] = axes["postnet_mels"][2] = "frames"
    elif component == "inverter":
        axes["mel"][2], axes["log_mag"][2] = "frames", "out_frames"
    elif component == "vocoder_cond":
        axes["mel_window"][2] = "window_frames"
        axes["upsampled_mel"][1] = axes["aux"][1] = "samples"
    elif component in ("text_encoder", "decoder_step"):
        for n in _TEXT_AXIS & set(axes):
            axes[n][1] = "text"
        if component == "decoder_step":  # its prenet masks are per step (B, prenet), not per symbol
            axes["prenet_mask1"], axes["prenet_mask2"] = {0: "batch"}, {0: "batch"}
    return axes


def _dims_dict(dims: Any) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(dims).items()}


def _wrappers(encoder: nn.Module | None, synthesizer: nn.Module | None, vocoder: nn.Module | None,
              inverter: nn.Module | None = None) -> dict[str, tuple[nn.Module, nn.Module]]:
    out: dict[str, tuple[nn.Module, nn.Module]] = {}
    if encoder is not None:
        out["encoder"] = (EncoderExport(encoder), encoder)
    if synthesizer is not None:
        out["text_encoder"] = (TextEncoderExport(synthesizer), synthesizer)
        out["decoder_step"] = (DecoderStepExport(synthesizer), synthesizer)
        out["postnet"] = (PostnetExport(synthesizer), synthesizer)
    if vocoder is not None:
        out["vocoder_cond"] = (VocoderCondExport(vocoder), vocoder)
        out["vocoder_step"] = (VocoderStepExport(vocoder), vocoder)
        out["vocoder_loop"] = (vocoder, vocoder)
    if inverter is not None:
        out["inverter"] = (inverter, inverter)
    return out


def _export_npz(model: nn.Module, component: str, path: Path, meta: dict[str, Any]) -> None:
    state = model.state_dict()
    arrays = {k: state[k].detach().cpu().float().numpy() for k in COMPONENTS[component][2]}
    with open(path, "wb") as f:
        np.savez(f, **arrays, **{NPZ_META_KEY: np.array(json.dumps(meta, sort_keys=True))})


def _export_onnx(wrapper: nn.Module, args: tuple[torch.Tensor, ...], component: str, path: Path,
                 meta: dict[str, Any], opset: int) -> None:
    try:
        import onnx
    except ImportError as exc:
        raise BackendUnavailableError("ONNX export needs the 'onnx' package (pip install onnx)") from exc
    _, inputs, outputs = COMPONENTS[component]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapper, args, str(path), dynamo=False, input_names=list(inputs), output_names=list(outputs),
                          dynamic_axes=_dynamic_axes(component), opset_version=opset, do_constant_folding=True)
    proto = onnx.load(str(path))
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(meta, sort_keys=True)
    proto.producer_name, proto.producer_version = "rtclone", __version__
    onnx.save(proto, str(path))


def _export_torchscript(wrapper: nn.Module, args: tuple[torch.Tensor, ...], path: Path, meta: dict[str, Any]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(wrapper, args, check_trace=False)
    torch.jit.save(traced, str(path), _extra_files={TS_EXTRA_FILE: json.dumps(meta, sort_keys=True)})


def _entry(path: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """The manifest entry of one written artifact."""
    keys = ("kind", "dims", "inputs", "outputs") + tuple(k for k in ("r", "lookahead") if k in meta)
    return {"file": path.name, "sha256": sha256_file(path), **{k: meta[k] for k in keys}}


def export_models(out_dir: str | Path, *, encoder: nn.Module | None, synthesizer: nn.Module | None = None,
                  vocoder: nn.Module | None = None, format: str = "onnx", opset: int = OPSET,
                  inverter: nn.Module | None = None) -> dict[str, Any]:
    """Export the encoder (and optionally the synthesizer, the vocoder and the mel inverter) to ``out_dir``.

    ``encoder`` may be None to export only the other models (at least one model is needed).
    ``format`` is "onnx" or "torchscript". Writes ``<component>.onnx`` / ``<component>.ts`` for
    each component (see the module docstring) and ``manifest.json``; returns the manifest dict.
    The models are copied to the CPU in eval mode first (the caller's models are not touched).
    The synthesizer's decoder step is exported for its current reduction factor ``r``.
    Raises OptionsError (bad format), BackendUnavailableError (``onnx`` missing), ArtifactError.
    """
    if format not in BACKENDS:
        raise OptionsError(f"format must be one of {BACKENDS}, got {format!r}")
    if encoder is None and synthesizer is None and vocoder is None and inverter is None:
        raise OptionsError("nothing to export: pass at least one of encoder, synthesizer, vocoder, inverter")
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ArtifactError(f"{out}: cannot create the export directory ({exc})") from exc
    models = [copy.deepcopy(m).cpu().eval() if m is not None else None for m in (encoder, synthesizer, vocoder, inverter)]
    manifest: dict[str, Any] = {"format": MANIFEST_FORMAT, "artifact_version": ARTIFACT_VERSION, "backend": format,
                                "rtclone_version": __version__, "sample_rate": SAMPLE_RATE,
                                "opset": opset if format == "onnx" else None, "components": {}}
    for component, (wrapper, model) in _wrappers(*models).items():
        kind, inputs, outputs = COMPONENTS[component]
        meta = {"artifact_version": ARTIFACT_VERSION, "rtclone_version": __version__, "component": component,
                "kind": kind, "dims": _dims_dict(model.dims), "inputs": list(inputs), "outputs": list(outputs),
                "sample_rate": SAMPLE_RATE, "backend": format, "opset": manifest["opset"]}
        if kind == "synthesizer":
            meta["r"] = model.r
        elif kind in ("vocoder", "inverter"):  # mel frames a streaming caller must wait for past a block
            meta["lookahead"] = int(model.lookahead)
        path = out / f"{component}{'.npz' if component in NPZ_COMPONENTS else SUFFIX[format]}"
        with torch.no_grad():
            if component in NPZ_COMPONENTS:
                _export_npz(model, component, path, meta)
            elif format == "onnx":
                _export_onnx(wrapper.eval(), _examples(component, model), component, path, meta, opset)
            else:
                _export_torchscript(wrapper.eval(), _examples(component, model), path, meta)
        manifest["components"][component] = _entry(path, meta)
    tmp = out / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    tmp.replace(out / MANIFEST)
    return manifest


def export_checkpoints(out_dir: str | Path, *, encoder: str | Path | None = None, synthesizer: str | Path | None = None,
                       vocoder: str | Path | None = None, format: str = "onnx", opset: int = OPSET,
                       inverter: str | Path | None = None) -> dict[str, Any]:
    """``rtclone export``: load checkpoints of any supported format and export them with :func:`export_models`.

    ``encoder`` defaults to resemblyzer's shipped pretrained weights; the synthesizer and the vocoder
    are exported only when given. Raises CheckpointError for unreadable checkpoints.
    """
    from .checkpoints import load_encoder, load_model

    return export_models(out_dir, encoder=load_encoder(encoder),
                         synthesizer=load_model(synthesizer, "synthesizer") if synthesizer is not None else None,
                         vocoder=load_model(vocoder, "vocoder") if vocoder is not None else None,
                         inverter=load_model(inverter, "inverter") if inverter is not None else None,
                         format=format, opset=opset)
