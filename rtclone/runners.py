"""Runners that serve the models from exported artifacts only (no model classes, no checkpoints).

A model directory written by :func:`rtclone.export.export_models` holds one artifact per
component and a ``manifest.json``::

    {"format": "rtclone-artifacts", "artifact_version": 1, "backend": "onnx"|"torchscript",
     "rtclone_version": ..., "sample_rate": 16000, "opset": 17,
     "components": {"encoder": {"file": "encoder.onnx", "kind": "encoder", "dims": {...},
                                "inputs": [...], "outputs": [...], "sha256": ...}, ...}}

Each artifact carries the same metadata inside it (ONNX ``metadata_props`` / TorchScript
``_extra_files["rtclone.json"]``). Loading checks the manifest, the files and their hashes, the
artifact version and the dims; any mismatch is an :class:`~rtclone.errors.ArtifactError` that
names the file.

:class:`OnnxRunner` (onnxruntime; the CUDA execution provider when ``onnxruntime-gpu`` and a GPU
are present) and :class:`TorchScriptRunner` share one interface on numpy arrays: embed mels,
text encode, decoder step, postnet, vocoder conditioning and vocoder step. The vocoder's sample
loop stays on the native kernels (``rtclone.kernels.cpu``): the runner returns the conditioning
and the loop's weights (``native_vocoder()``).

Adapters plug the artifacts into the existing inference code, so nothing is re-implemented:
:class:`ArtifactSynthesizer` into ``rtclone.synthesizer.synthesize`` / ``stream`` and
:class:`ArtifactVocoder` into ``rtclone.vocoder_gen.generate`` / ``stream``.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator, Mapping

import numpy as np
import torch

from .errors import ArtifactError, BackendUnavailableError, InputShapeError
from .export import (COMPONENTS, DECODER_STATE, MANIFEST, METADATA_KEY, NPZ_COMPONENTS, TS_EXTRA_FILE, check_loop_shapes,
                     check_metadata, load_npz_artifact, read_manifest, sha256_file)


def prenet_masks(shape: tuple[int, ...], p: float, generator: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """The two prenet keep-masks (0/1 float32) of one prenet call, drawn like the torch model.

    With the torch generator the synthesizer uses (seeded with the same seed, drawn in the same
    order: text encoder, then one pair per decoder step) the masks equal the model's own, so the
    exported pipeline reproduces the torch mels. p <= 0 draws nothing and keeps everything.
    """
    if p <= 0.0:
        ones = np.ones(shape, np.float32)
        return ones, ones.copy()
    a = torch.empty(shape, dtype=torch.float32).bernoulli_(1.0 - p, generator=generator)
    b = torch.empty(shape, dtype=torch.float32).bernoulli_(1.0 - p, generator=generator)
    return a.numpy(), b.numpy()


def _f32(x: Any, name: str, ndim: int, last: int | None = None) -> np.ndarray:
    a = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    if a.ndim != ndim or (last is not None and a.shape[-1] != last):
        want = f"{ndim}-D" + (f" with last axis {last}" if last is not None else "")
        raise InputShapeError(f"{name}: expected a {want} array, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise InputShapeError(f"{name}: NaN or infinite values")
    return a


class ArtifactRunner:
    """Common interface of the runners; subclasses load artifacts and implement :meth:`run`."""

    backend = ""

    def __init__(self, model_dir: str | Path, expect_dims: Mapping[str, Mapping[str, Any]] | None = None,
                 verify_hashes: bool = True) -> None:
        self.model_dir = Path(model_dir)
        self.manifest = read_manifest(self.model_dir)
        if self.manifest["backend"] != self.backend:
            raise ArtifactError(f"{self.model_dir / MANIFEST}: a {self.manifest['backend']} export, "
                                f"not {self.backend}: use the matching runner (load_runner picks it)")
        self.meta: dict[str, dict[str, Any]] = {}
        self._models: dict[str, Any] = {}
        for name, entry in self.manifest["components"].items():
            file = self.model_dir / str(entry.get("file", ""))
            if Path(str(entry.get("file", ""))).name != entry.get("file"):
                raise ArtifactError(f"{self.model_dir / MANIFEST}: component {name!r} names a file outside the directory")
            if not file.is_file():
                raise ArtifactError(f"{file}: artifact of component {name!r} is missing")
            if verify_hashes and entry.get("sha256") != sha256_file(file):
                raise ArtifactError(f"{file}: SHA-256 differs from the manifest (file changed or corrupt)")
            try:
                model, meta = load_npz_artifact(file) if name in NPZ_COMPONENTS else self._load(file)
            except ArtifactError:
                raise
            except Exception as exc:  # noqa: BLE001 - any loader failure means an unusable artifact
                raise ArtifactError(f"{file}: cannot load ({type(exc).__name__}: {exc})") from exc
            self.meta[name] = check_metadata(file, meta, name, entry, expect_dims)
            if name in NPZ_COMPONENTS:
                check_loop_shapes(file, model, self.meta[name]["dims"])
            else:
                self._check_graph(file, name, model, self.meta[name])
            self._models[name] = model

    # ---- backend hooks ----
    def _load(self, file: Path) -> tuple[Any, Any]:
        raise NotImplementedError

    def _check_graph(self, file: Path, component: str, model: Any, meta: dict[str, Any]) -> None:
        """Backend-specific check that the graph matches its metadata (optional)."""

    def run(self, component: str, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one component: named numpy inputs → named numpy outputs."""
        raise NotImplementedError

    # ---- the shared interface ----
    def has(self, component: str) -> bool:
        """Is this component in the directory?"""
        return component in self._models

    def dims(self, kind: str) -> dict[str, Any]:
        """The dims dict of a model kind ("encoder", "synthesizer", "vocoder") as exported."""
        for name, meta in self.meta.items():
            if meta["kind"] == kind:
                return dict(meta["dims"])
        raise ArtifactError(f"{self.model_dir}: no {kind} artifacts in this directory")

    def _need(self, component: str) -> None:
        if component not in self._models:
            raise ArtifactError(f"{self.model_dir / MANIFEST}: no {component!r} artifact in this export")

    @property
    def r(self) -> int:
        """Frames per decoder step the decoder step was exported with."""
        self._need("decoder_step")
        return int(self.meta["decoder_step"]["r"])

    @property
    def vocoder_lookahead(self) -> int:
        """Mel frames the vocoder conditioning needs after a block's last frame (its receptive field)."""
        self._need("vocoder_cond")
        return int(self.meta["vocoder_cond"]["lookahead"])

    @property
    def sample_rate(self) -> int:
        return int(self.manifest["sample_rate"])

    def embed_mels(self, mels: np.ndarray) -> np.ndarray:
        """Partial mels (N, T, n_mels) → unit-norm embeddings (N, embed)."""
        self._need("encoder")
        x = _f32(mels, "mels", 3, self.meta["encoder"]["dims"]["n_mels"])
        return self.run("encoder", {"mels": x})["embeddings"]

    def embed_utterance(self, wav: np.ndarray, options: Any = None) -> np.ndarray:
        """The L2-normalised embedding (embed,) of one preprocessed 16 kHz utterance (as the torch path)."""
        from .encoder import EmbedOptions, utterance_partials  # front-end functions only, no model

        mels, _ = utterance_partials(wav, options if options is not None else EmbedOptions())
        mean = self.embed_mels(mels).mean(axis=0)
        norm = float(np.linalg.norm(mean))
        if not np.isfinite(norm) or norm == 0.0:
            from .errors import SilentAudioError

            raise SilentAudioError("the encoder produced a zero embedding (no usable speech in the audio)")
        return (mean / norm).astype(np.float32)

    def encode_text(self, chars: np.ndarray, speaker: np.ndarray, generator: Any = None,
                    masks: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """chars (B, T_text) int ids (0 = pad), speaker (B, spk) → memory (B, T_text, enc + spk), keys (B, T_text, A).

        The prenet dropout masks are ``masks`` or drawn from ``generator`` (see :func:`prenet_masks`).
        """
        self._need("text_encoder")
        d = self.meta["text_encoder"]["dims"]
        ids = np.ascontiguousarray(np.asarray(chars, dtype=np.int64))
        if ids.ndim != 2 or ids.size == 0 or ids.min() < 0 or ids.max() >= d["num_chars"]:
            raise InputShapeError(f"chars must be (B, T_text) ids in [0, {d['num_chars']}), got shape {ids.shape}")
        spk = _f32(speaker, "speaker", 2, d["speaker_embedding_size"])
        if spk.shape[0] != ids.shape[0]:
            raise InputShapeError(f"speaker batch {spk.shape[0]} != text batch {ids.shape[0]}")
        if masks is None:
            masks = prenet_masks((ids.shape[0], ids.shape[1], d["encoder_dims"]), d["dropout"], generator)
        out = self.run("text_encoder", {"chars": ids, "speaker": spk, "prenet_mask1": masks[0], "prenet_mask2": masks[1]})
        return out["memory"], out["keys"]

    def initial_state(self, memory: np.ndarray) -> dict[str, np.ndarray]:
        """The decoder's zero state for a memory (B, T_text, ctx)."""
        self._need("decoder_step")
        d = self.meta["decoder_step"]["dims"]
        B, T, C = memory.shape
        z = lambda *s: np.zeros(s, np.float32)  # noqa: E731
        return {"prev_frame": z(B, d["n_mels"]), "attn_hidden": z(B, d["decoder_dims"]),
                "rnn1_h": z(B, d["lstm_dims"]), "rnn1_c": z(B, d["lstm_dims"]),
                "rnn2_h": z(B, d["lstm_dims"]), "rnn2_c": z(B, d["lstm_dims"]),
                "context": z(B, C), "cumulative": z(B, T)}

    def decoder_step(self, state: Mapping[str, np.ndarray], memory: np.ndarray, keys: np.ndarray,
                     text_mask: np.ndarray | None = None, generator: Any = None,
                     masks: tuple[np.ndarray, np.ndarray] | None = None,
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """One decoder step: → mels (B, n_mels, r), stop logit (B,), attention (B, T_text), new state.

        ``text_mask`` (B, T_text) bool marks real symbols (default: all); prenet masks as in
        :meth:`encode_text`.
        """
        self._need("decoder_step")
        d = self.meta["decoder_step"]["dims"]
        B, T = memory.shape[0], memory.shape[1]
        if text_mask is None:
            text_mask = np.ones((B, T), dtype=bool)
        if masks is None:
            masks = prenet_masks((B, d["prenet_dims"]), d["dropout"], generator)
        feeds = {n: np.ascontiguousarray(state[n], dtype=np.float32) for n in DECODER_STATE}
        feeds.update(memory=np.ascontiguousarray(memory, dtype=np.float32), keys=np.ascontiguousarray(keys, dtype=np.float32),
                     text_mask=np.ascontiguousarray(text_mask, dtype=bool), prenet_mask1=masks[0], prenet_mask2=masks[1])
        out = self.run("decoder_step", feeds)
        new = {n: out[f"{n}_out"] for n in DECODER_STATE}
        return out["mels"], out["stop_logit"], out["attention"], new

    def postnet(self, mels: np.ndarray) -> np.ndarray:
        """Decoder mels (B, n_mels, T) → postnet mels (B, n_mels, T)."""
        self._need("postnet")
        x = _f32(mels, "mels", 3)
        if x.shape[1] != self.meta["postnet"]["dims"]["n_mels"]:
            raise InputShapeError(f"mels: expected (B, {self.meta['postnet']['dims']['n_mels']}, T), got {x.shape}")
        return self.run("postnet", {"mels": x})["postnet_mels"]

    def vocoder_conditioning(self, window: np.ndarray) -> np.ndarray:
        """Synthesizer mels with ``pad`` frames of context each side (B, feat, n + 2 pad) → per-sample
        conditioning (B, n · hop, feat + res_out) for the native sample loop."""
        self._need("vocoder_cond")
        x = _f32(window, "mel_window", 3)
        d = self.meta["vocoder_cond"]["dims"]
        if x.shape[1] != d["feat_dims"] or x.shape[2] < 2 * d["pad"] + 1:
            raise InputShapeError(f"mel_window: expected (B, {d['feat_dims']}, n + {2 * d['pad']}) with n >= 1, got {x.shape}")
        out = self.run("vocoder_cond", {"mel_window": x})
        return np.concatenate([out["upsampled_mel"], out["aux"]], axis=-1)

    def vocoder_step(self, prev_sample: np.ndarray, cond: np.ndarray, h1: np.ndarray, h2: np.ndarray,
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One WaveRNN sample step: prev_sample (B, 1), cond (B, cond), h1/h2 (B, R) → logits (B, n_classes), h1, h2."""
        self._need("vocoder_step")
        feeds = {"prev_sample": _f32(prev_sample, "prev_sample", 2, 1), "cond": _f32(cond, "cond", 2),
                 "h1": _f32(h1, "h1", 2), "h2": _f32(h2, "h2", 2)}
        out = self.run("vocoder_step", feeds)
        return out["logits"], out["h1_out"], out["h2_out"]


    def vocoder_loop_state(self) -> dict[str, torch.Tensor]:
        """The sample loop's weights as torch tensors under WaveRNN's state-dict names (I, rnn1, rnn2, fc1-3)."""
        self._need("vocoder_loop")
        return {k: torch.from_numpy(v.copy()) for k, v in self._models["vocoder_loop"].items()}

    def native_vocoder(self, **kwargs: Any) -> Any:
        """The native CPU sample loop (``rtclone.kernels.cpu.NativeWaveRNN``) on the exported weights;
        ``kwargs`` go to its constructor (block, threads, value_dtype, ...). Feed it
        :meth:`vocoder_conditioning` output (as a torch tensor) and uniforms."""
        from .kernels.cpu import NativeWaveRNN

        d = self.dims("vocoder")
        return NativeWaveRNN(self.vocoder_loop_state(), mode=d["mode"], bits=d["bits"], **kwargs)


def select_providers(device: str = "auto") -> list[str]:
    """onnxruntime execution providers: CUDA (then CPU) when onnxruntime-gpu and a GPU are present."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device not in ("auto", "cpu", "cuda"):
        raise BackendUnavailableError(f"device must be auto, cpu or cuda, got {device!r}")
    cuda = "CUDAExecutionProvider" in available and _gpu_present()
    if device == "cuda" and not cuda:
        raise BackendUnavailableError(f"CUDA execution provider unavailable (providers: {available})")
    return ["CUDAExecutionProvider", "CPUExecutionProvider"] if cuda and device != "cpu" else ["CPUExecutionProvider"]


def _gpu_present() -> bool:
    # a CPU build of torch cannot see the GPU: trust the device node then
    return bool(torch.cuda.is_available()) or Path("/dev/nvidia0").exists()


class OnnxRunner(ArtifactRunner):
    """Runs ONNX artifacts with onnxruntime (numpy in, numpy out)."""

    backend = "onnx"

    def __init__(self, model_dir: str | Path, expect_dims: Mapping[str, Mapping[str, Any]] | None = None,
                 device: str = "auto", threads: int | None = None, verify_hashes: bool = True) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendUnavailableError("onnxruntime is not installed") from exc
        self._ort = ort
        self.providers = select_providers(device)
        self._threads = threads
        super().__init__(model_dir, expect_dims, verify_hashes)

    def _load(self, file: Path) -> tuple[Any, Any]:
        so = self._ort.SessionOptions()
        if self._threads is not None:
            so.intra_op_num_threads = self._threads
            so.inter_op_num_threads = 1
        sess = self._ort.InferenceSession(str(file), so, providers=self.providers)
        raw = sess.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        try:
            return sess, json.loads(raw) if raw else None
        except ValueError as exc:
            raise ArtifactError(f"{file}: unreadable rtclone metadata ({exc})") from exc

    def _check_graph(self, file: Path, component: str, model: Any, meta: dict[str, Any]) -> None:
        names_in = tuple(i.name for i in model.get_inputs())
        names_out = tuple(o.name for o in model.get_outputs())
        _, inputs, outputs = COMPONENTS[component]
        if set(names_in) != set(inputs) or names_out != outputs:
            raise ArtifactError(f"{file}: graph inputs {names_in} / outputs {names_out} do not match its metadata")
        # static feature widths of the graph must agree with the dims in the metadata
        want = _static_widths(component, meta["dims"])
        for i in model.get_inputs():
            if i.name in want and i.shape[-1] != want[i.name]:
                raise ArtifactError(f"{file}: input {i.name!r} has width {i.shape[-1]}, dims say {want[i.name]}")

    def run(self, component: str, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        sess = self._models[component]
        outs = sess.run(None, dict(feeds))
        return dict(zip(COMPONENTS[component][2], outs))


class _ArtifactDecoder:
    """``Tacotron.decoder`` as :class:`rtclone.synth_stream.Decoding` uses it, on the decoder-step artifact."""

    def __init__(self, runner: ArtifactRunner) -> None:
        self.runner = runner

    def init_state(self, memory: torch.Tensor) -> dict[str, np.ndarray]:
        return self.runner.initial_state(memory.numpy())

    def mel_weight(self, r: int) -> torch.Tensor:
        return torch.empty(0)  # baked into the artifact (for its r)

    def step(self, state: Mapping[str, np.ndarray], memory: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor | None,
             r: int, generator: torch.Generator | None = None, mel_weight: torch.Tensor | None = None,
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, np.ndarray]]:
        m = None if mask is None else mask.cpu().numpy()
        mels, stop, attn, new = self.runner.decoder_step(state, memory.numpy(), keys.numpy(), m, generator)
        return torch.from_numpy(mels), torch.from_numpy(stop), torch.from_numpy(attn), new


class ArtifactSynthesizer:
    """The exported synthesizer in the shape :mod:`rtclone.synthesizer` drives, so its ``synthesize``
    and ``stream`` (stop token, length guard, attention checks, chunked postnet) run from artifacts.

    Provides ``dims`` (the exported dims as attributes), ``r``, ``encode``, ``decoder`` (init_state,
    mel_weight, step), ``postnet_mel`` and the few nn.Module methods those functions call.
    Usage: ``rtclone.synthesizer.stream(ArtifactSynthesizer(runner), text, embedding, options)``;
    the same seed gives the torch model's mels (prenet masks drawn in the same order).
    """

    training = False

    def __init__(self, runner: ArtifactRunner) -> None:
        for component in ("text_encoder", "decoder_step", "postnet"):
            runner._need(component)
        self.runner = runner
        self.dims = SimpleNamespace(**runner.dims("synthesizer"))
        self.decoder = _ArtifactDecoder(runner)

    @property
    def r(self) -> int:
        return self.runner.r

    def parameters(self) -> Iterator[torch.Tensor]:
        yield torch.zeros(0)  # callers read the device off the first parameter: the CPU

    def eval(self) -> "ArtifactSynthesizer":
        return self

    def train(self, mode: bool = True) -> "ArtifactSynthesizer":
        return self

    def encode(self, chars: torch.Tensor, speakers: torch.Tensor,
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        memory, keys = self.runner.encode_text(chars.cpu().numpy(), speakers.cpu().numpy(), generator)
        return torch.from_numpy(memory), torch.from_numpy(keys)

    def postnet_mel(self, mels: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.runner.postnet(mels.detach().cpu().numpy()))


class ArtifactInverter:
    """The exported mel inverter in the shape :class:`rtclone.mel_inverter.InverterStream` and
    ``audio.griffin_lim`` drive (``dims``, ``lookahead``, called on a (1, 80, T) tensor, ``invert``);
    ``artifact_sha256`` names it in eval reports (the manifest's hash of the graph)."""

    def __init__(self, runner: ArtifactRunner) -> None:
        from .mel_inverter import InverterDims

        runner._need("inverter")
        self.runner = runner
        self.dims = InverterDims(**runner.dims("inverter"))
        self.lookahead = self.dims.context
        self.artifact_sha256 = str(runner.manifest["components"]["inverter"]["sha256"])

    def __call__(self, mel: torch.Tensor) -> torch.Tensor:
        mel_np = _f32(mel.detach().cpu().numpy(), "mel", 3, None)
        return torch.from_numpy(self.runner.run("inverter", {"mel": mel_np})["log_mag"])

    def invert(self, mel: np.ndarray) -> np.ndarray:
        from .mel_inverter import invert

        return invert(self, mel)


class ArtifactVocoder:
    """The exported vocoder in the shape :mod:`rtclone.vocoder_gen` drives, so its ``generate`` and
    ``stream`` (fold/crossfade, mu-law, de-emphasis, streaming blocks) run from artifacts.

    ``dims`` (the exported dims as attributes), ``lookahead``, ``conditioning`` (on the runner),
    ``state_dict`` (the loop weights, for the native kernels: backend "cpu-native"/"auto") and
    ``sample_loop`` (the kernels' plain-torch reference loop: backend "torch").
    Usage: ``rtclone.vocoder_gen.generate(ArtifactVocoder(runner), mel, seed=0)``.
    """

    def __init__(self, runner: ArtifactRunner) -> None:
        runner._need("vocoder_cond")
        runner._need("vocoder_loop")
        self.runner = runner
        d = runner.dims("vocoder")
        self.dims = SimpleNamespace(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})
        self.lookahead = runner.vocoder_lookahead
        self._state = runner.vocoder_loop_state()

    def conditioning(self, window: torch.Tensor) -> torch.Tensor:
        """window (B, feat, n + 2 pad) → conditioning (B, n · hop, cond)."""
        return torch.from_numpy(self.runner.vocoder_conditioning(window.detach().cpu().numpy()))

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self._state)

    def sample_loop(self, cond: torch.Tensor, uniforms: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        from .kernels.cpu import reference_generate

        return reference_generate(self._state, cond.float(), uniforms.float(), self.dims.mode, self.dims.bits, state)


def _static_widths(component: str, d: Mapping[str, Any]) -> dict[str, int]:
    if component == "encoder":
        return {"mels": d["n_mels"]}
    if component == "text_encoder":
        return {"speaker": d["speaker_embedding_size"], "prenet_mask1": d["encoder_dims"]}
    if component == "decoder_step":
        return {"prev_frame": d["n_mels"], "attn_hidden": d["decoder_dims"], "rnn1_h": d["lstm_dims"],
                "keys": d["decoder_dims"], "prenet_mask1": d["prenet_dims"]}
    if component == "vocoder_step":
        return {"h1": d["rnn_dims"], "cond": d["feat_dims"] + d["res_out_dims"]}
    return {}  # (the inverter's mel width is axis 1, not the last: the metadata's dims are checked instead)


class TorchScriptRunner(ArtifactRunner):
    """Runs TorchScript artifacts with ``torch.jit.load`` (numpy in, numpy out)."""

    backend = "torchscript"

    def __init__(self, model_dir: str | Path, expect_dims: Mapping[str, Mapping[str, Any]] | None = None,
                 device: str = "cpu", verify_hashes: bool = True) -> None:
        self.device = torch.device(device)
        super().__init__(model_dir, expect_dims, verify_hashes)

    def _load(self, file: Path) -> tuple[Any, Any]:
        extra = {TS_EXTRA_FILE: ""}
        module = torch.jit.load(str(file), map_location=self.device, _extra_files=extra)
        raw = extra[TS_EXTRA_FILE]
        try:
            return module.eval(), json.loads(raw) if raw else None
        except ValueError as exc:
            raise ArtifactError(f"{file}: unreadable rtclone metadata ({exc})") from exc

    def run(self, component: str, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        names_in, names_out = COMPONENTS[component][1], COMPONENTS[component][2]
        args = [torch.from_numpy(np.asarray(feeds[n])).to(self.device) for n in names_in]
        with torch.inference_mode():
            outs = self._models[component](*args)
        if isinstance(outs, torch.Tensor):
            outs = (outs,)
        return {n: o.detach().cpu().numpy() for n, o in zip(names_out, outs)}


def load_runner(model_dir: str | Path, threads: int | None = None, **kwargs: Any) -> ArtifactRunner:
    """The runner matching the directory's backend (``manifest.json``): OnnxRunner or TorchScriptRunner.
    ``threads``: onnxruntime's intra-op threads per session (None: its default, one per core); TorchScript
    runs on torch's threads (``torch.set_num_threads``)."""
    backend = read_manifest(model_dir)["backend"]
    if backend == "onnx":
        return OnnxRunner(model_dir, threads=threads, **kwargs)
    return TorchScriptRunner(model_dir, **kwargs)
