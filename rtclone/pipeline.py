"""The cloning pipeline: reference audio → embedding → mel stream → PCM stream.

The pipeline knows no socket. The server, the CLI and the Python API all drive a
:class:`VoiceEngine`: anything with ``sample_rate``, ``embed(audio, sr)`` and
``stream(text, embedding, options)``. :class:`Cloner` is the real one.
"""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Protocol

import numpy as np

from .errors import CheckpointError, InputShapeError, LimitExceededError, OptionsError, TextError

if TYPE_CHECKING:
    from .vocoder_batch import BatcherOptions, VocoderBatcher

BACKENDS = ("auto", "torch", "cpu-native", "triton")


@dataclass(frozen=True)
class SynthesisOptions:
    """Run-time options of one synthesis request (validated here, in one place)."""

    seed: int = 0  # sampling seed: the same seed gives the same audio
    backend: str = "auto"  # vocoder backend: auto | torch | cpu-native | triton
    max_chars: int = 5000  # longest text accepted in one request
    # cut the first text chunk after this many words (0: no cut). A short first chunk once made audio
    # start early; with the vocoder streaming inside a chunk it costs ~8 ms of TTFA and breaks prosody
    first_chunk_words: int = 0
    max_chunk_words: int = 30  # longer sentences are split at commas or this many words
    vocoder_chunk_frames: int = 10  # mel frames handed to the vocoder stream at a time
    max_decoder_steps: int = 2000  # synthesizer guard per text chunk (decoder steps)
    fade_out_s: float = 0.0  # fade the very end of the utterance out over this many seconds
    # synthesizer attention window (back, ahead) around the last peak, in symbols; None: off
    attention_window: tuple[int, int] | None = (1, 4)
    # end a chunk once attention has rested on the end of its text this many frames (a stop token
    # that does not fire would otherwise run to the stuck-attention guard); None: stop token only
    end_of_text_frames: int | None = 12

    def __post_init__(self) -> None:
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or not 0 <= self.seed < 2**63:
            raise OptionsError(f"seed must be an integer in [0, 2**63), got {self.seed!r}")
        if self.backend not in BACKENDS:
            raise OptionsError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        for name, lo, hi in (
            ("max_chars", 1, 1_000_000),
            ("first_chunk_words", 0, 1000),
            ("max_chunk_words", 1, 1000),
            ("vocoder_chunk_frames", 1, 10_000),
            ("max_decoder_steps", 1, 100_000),
        ):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
                raise OptionsError(f"{name} must be an integer in [{lo}, {hi}], got {v!r}")
        if not isinstance(self.fade_out_s, (int, float)) or not 0.0 <= self.fade_out_s <= 5.0:
            raise OptionsError(f"fade_out_s must be a number in [0, 5], got {self.fade_out_s!r}")
        from .synthesizer import TacotronOptions

        synth = TacotronOptions(attention_window=self.attention_window, end_of_text_frames=self.end_of_text_frames)  # validates both
        object.__setattr__(self, "attention_window", synth.attention_window)  # e.g. a JSON list → tuple

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "SynthesisOptions":
        """Options from a JSON object (e.g. a wire message); unknown keys are an OptionsError."""
        d = dict(d or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise OptionsError(f"unknown option(s) {unknown}; known: {sorted(known)}")
        return cls(**d)


class VoiceEngine(Protocol):
    """What the server, the CLI and the clients need from a cloning engine."""

    sample_rate: int

    def embed(self, audio: np.ndarray, sr: int) -> np.ndarray:
        """Reference audio (float32 mono at ``sr``) → L2-normalised embedding (D,). Raises AudioError subclasses."""
        ...

    def stream(self, text: str, embedding: np.ndarray, options: SynthesisOptions = SynthesisOptions()) -> Iterator[np.ndarray]:
        """Yield float32 PCM chunks at ``sample_rate`` as they are made. Raises TextError/InputShapeError/SynthesisError."""
        ...

    # Optional (the server calls them when present): ``start_vocoder_batching() -> bool`` makes
    # concurrent streams share the vocoder's sample loop, ``stop_vocoder_batching()`` undoes it.


DEFAULT_MODELS_DIR = Path(__file__).resolve().parent / "models"
MODEL_FILES = {"encoder": "encoder.pt", "synthesizer": "synthesizer.pt", "vocoder": "vocoder.pt"}
INVERTER_FILE = "inverter.pt"  # optional: a learned mel -> linear map for Griffin-Lim (rtclone.mel_inverter)
SPEAKER_MEAN_FILE = "speaker_mean.npy"  # optional: the training speakers' mean embedding (Cloner.speaker_contrast)
_NO_SPEAKER_MEAN = ("speaker_contrast needs the training speakers' mean embedding (speaker_mean.npy in the model "
                    "folder: scripts/speaker_mean.py); these models have none")


def load_speaker_mean(path: Path, size: int) -> np.ndarray:
    """A model folder's ``speaker_mean.npy``: (size,) finite float32, no pickle."""
    try:
        mean = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable ({type(exc).__name__}: {exc})") from exc
    try:
        return _check_embedding(mean, size)
    except (InputShapeError, ValueError, TypeError) as exc:  # wrong shape, NaN, or not numbers
        raise CheckpointError(f"{path}: {exc}") from exc


@dataclass
class CloneResult:
    """Audio and timings of one :meth:`Cloner.clone` call."""

    audio: np.ndarray  # (N,) float32 at sample_rate
    sample_rate: int
    ttfa_s: float  # time from the call to the first PCM chunk
    elapsed_s: float  # total wall time
    chunks: int

    @property
    def audio_s(self) -> float:
        return len(self.audio) / self.sample_rate

    @property
    def rtf(self) -> float:
        """Real-time factor: compute time / audio time (< 1 is faster than real time)."""
        return self.elapsed_s / self.audio_s if self.audio_s else float("inf")


class Cloner:
    """Reference audio + text → speech in that voice, streamed.

    ``encoder`` is a :class:`rtclone.encoder.SpeakerEncoder`, ``synthesizer`` a
    :class:`rtclone.synthesizer.Tacotron`, ``vocoder`` a :class:`rtclone.vocoder.WaveRNN` or a
    :class:`rtclone.vocoder_gen.GriffinLimVocoder` (no weights). Text is cut into sentence chunks
    (a short first one); each chunk's mel frames stream from the synthesizer into the vocoder,
    whose PCM chunks are yielded as they are made.
    ``postfilter=True`` runs a WaveRNN's output through the mel-envelope post-filter
    (:mod:`rtclone.postfilter`; Griffin-Lim needs none): a model folder turns it on by default with
    ``"postfilter": true`` in the ``vocoder`` entry of its ``card.json``.
    ``speaker_contrast`` a > 0 conditions the synthesizer on normalise(e + a (e − ``speaker_mean``))
    instead of the embedding e: pushed away from the mean voice of the synthesizer's training
    speakers (``speaker_mean.npy`` in a model folder), so that near voices stay apart.
    ``decoder_int8=True`` runs the synthesizer's decoder with int8 weights
    (:func:`rtclone.synthesizer.quantize_decoder_int8`: batch-1 decoding is bound by fetching
    weights, so fewer weight bytes decode faster); False restores the float32 model. A model folder
    turns it on with ``"decoder_int8": true`` in the ``synthesizer`` entry of its ``card.json``.
    """

    sample_rate = 16000
    speaker_mean: np.ndarray | None = None  # mean embedding of the training speakers (D,), if known
    _speaker_contrast = 0.0

    @property
    def speaker_contrast(self) -> float:
        return self._speaker_contrast

    @speaker_contrast.setter
    def speaker_contrast(self, a: float) -> None:
        """Validated on assignment: a number in [0, 4], and > 0 only when the speakers' mean is known."""
        if not isinstance(a, (int, float)) or isinstance(a, bool) or not 0.0 <= a <= 4.0:
            raise OptionsError(f"speaker_contrast must be a number in [0, 4], got {a!r}")
        if a > 0 and self.speaker_mean is None:
            raise OptionsError(_NO_SPEAKER_MEAN)
        self._speaker_contrast = float(a)

    @property
    def decoder_int8(self) -> bool:
        return self._int8 is not None and self.synthesizer is self._int8[1]

    @decoder_int8.setter
    def decoder_int8(self, on: bool) -> None:
        """Quantize (True) or restore (False) the synthesizer's decoder; a Tacotron module only. A synthesizer
        assigned while it is on stays as assigned (it is not the quantized copy, so there is nothing to restore)."""
        from .synthesizer import Tacotron, quantize_decoder_int8

        if not isinstance(on, bool):
            raise OptionsError(f"decoder_int8 must be a bool, got {on!r}")
        if on == self.decoder_int8:
            return
        if not on:
            self.synthesizer, self._int8 = self._int8[0], None
            return
        if not isinstance(self.synthesizer, Tacotron):
            raise OptionsError(f"decoder_int8 applies to a Tacotron module, not {type(self.synthesizer).__name__} "
                               "(exported artifacts: export the float32 model and quantize in the runtime)")  # fmt: skip
        try:
            quantized = quantize_decoder_int8(self.synthesizer)
        except (RuntimeError, NotImplementedError) as exc:  # e.g. a torch build without a quantized engine
            raise OptionsError(f"int8 decoding is not available here ({type(exc).__name__}: {exc})") from exc
        self._int8 = (self.synthesizer, quantized)
        self.synthesizer = quantized

    _int8: "tuple[Any, Any] | None" = None  # (the float32 synthesizer, its int8 copy) while decoder_int8 is on

    def __init__(self, encoder: Any, synthesizer: Any, vocoder: Any, *, tacotron_overrides: dict[str, Any] | None = None,
                 postfilter: bool = False) -> None:  # fmt: skip
        if not isinstance(postfilter, bool):
            raise OptionsError(f"postfilter must be a bool, got {postfilter!r}")
        self.encoder = encoder
        self.synthesizer = synthesizer
        self.vocoder = vocoder
        self.postfilter = postfilter
        # extra TacotronOptions fields (e.g. attention-failure thresholds) applied to every chunk
        self.tacotron_overrides = dict(tacotron_overrides or {})
        # shared by concurrent streams while batching is on (see start_vocoder_batching)
        self.vocoder_batcher: "VocoderBatcher | None" = None

    # ---- vocoder batching (opt-in; the server turns it on) -----------------------------------------
    @property
    def batch_vocoder(self) -> bool:
        """True while concurrent streams share one :class:`~rtclone.vocoder_batch.VocoderBatcher`."""
        return self.vocoder_batcher is not None

    def start_vocoder_batching(self, options: "BatcherOptions | None" = None) -> bool:
        """Run the WaveRNN sample loops of concurrent ``stream`` calls stacked in shared calls on one
        worker thread (``options``: :class:`~rtclone.vocoder_batch.BatcherOptions`). Returns False
        (and does nothing) for the Griffin-Lim vocoder, which has no sample loop. Idempotent."""
        from .vocoder_batch import BatcherOptions, VocoderBatcher

        if not self.has_trained_vocoder:
            return False
        if self.vocoder_batcher is None:
            self.vocoder_batcher = VocoderBatcher(options if options is not None else BatcherOptions())
        return True

    def stop_vocoder_batching(self) -> None:
        """Stop batching and join the batcher's thread; running streams go on unbatched. Idempotent."""
        batcher, self.vocoder_batcher = self.vocoder_batcher, None
        if batcher is not None:
            batcher.close()

    # ---- construction ----------------------------------------------------------------------
    @classmethod
    def from_paths(cls, encoder: str | Path | None = None, synthesizer: str | Path | None = None,
                   vocoder: str | Path | None = None) -> "Cloner":  # fmt: skip
        """Load checkpoints (rtclone or RTVC format). ``encoder=None``: resemblyzer's pretrained
        weights; ``vocoder=None``: the Griffin-Lim baseline. A synthesizer is required."""
        from .checkpoints import load_encoder, load_model
        from .vocoder_gen import GriffinLimVocoder

        if synthesizer is None:
            raise CheckpointError("a synthesizer checkpoint is required (none given)")
        enc = load_encoder(encoder)
        syn = load_model(synthesizer, "synthesizer")
        voc = load_model(vocoder, "vocoder") if vocoder is not None else GriffinLimVocoder()
        return cls(enc, syn, voc)

    @classmethod
    def from_dir(cls, path: str | Path, decoder_int8: bool | None = None) -> "Cloner":
        """Load ``synthesizer.pt`` (required), ``encoder.pt`` and ``vocoder.pt`` (optional) from a folder.

        ``decoder_int8``: None decodes as the folder's ``card.json`` says; True / False overrides it (set
        here, the card's int8 copy is not made only to be thrown away)."""
        if decoder_int8 is not None and not isinstance(decoder_int8, bool):
            raise OptionsError(f"decoder_int8 must be True, False or None (the card's choice), got {decoder_int8!r}")
        path = Path(path)
        if not path.is_dir():
            raise CheckpointError(f"model directory not found: {path}")
        if (path / "manifest.json").is_file():
            return cls.from_artifacts(path, decoder_int8)
        files = {k: path / f for k, f in MODEL_FILES.items()}
        if not files["synthesizer"].is_file():
            raise CheckpointError(f"{files['synthesizer']}: missing (a model directory needs at least synthesizer.pt)")
        cloner = cls.from_paths(*(files[k] if files[k].is_file() else None for k in ("encoder", "synthesizer", "vocoder")))
        cloner.postfilter = cloner.has_trained_vocoder and _card_flag(path / "card.json", "vocoder", "postfilter")
        if not cloner.has_trained_vocoder and (path / INVERTER_FILE).is_file():
            from .checkpoints import load_model

            cloner.vocoder.inverter = load_model(path / INVERTER_FILE, "inverter").eval()
        if decoder_int8:
            cloner.decoder_int8 = True
        elif decoder_int8 is None and _card_flag(path / "card.json", "synthesizer", "decoder_int8"):
            try:
                cloner.decoder_int8 = True
            except OptionsError as exc:  # the models still work: in float32, said once
                warnings.warn(f"{path}: {exc}; decoding in float32", RuntimeWarning, stacklevel=2)
        if (path / SPEAKER_MEAN_FILE).is_file():
            cloner.speaker_mean = load_speaker_mean(path / SPEAKER_MEAN_FILE, cloner.synthesizer.dims.speaker_embedding_size)
        return cloner

    @property
    def has_trained_vocoder(self) -> bool:
        """False for the Griffin-Lim baseline, True for a WaveRNN (module or exported)."""
        from .vocoder_gen import GriffinLimVocoder

        return not isinstance(self.vocoder, GriffinLimVocoder)

    @classmethod
    def from_artifacts(cls, path: str | Path, decoder_int8: bool | None = None, onnx_threads: int | None = 1) -> "Cloner":
        """Run from exported ONNX/TorchScript artifacts (``rtclone export``); no model classes loaded.
        ``decoder_int8=True`` is refused with the reason (``Cloner.decoder_int8``); None / False decode as exported.
        ``onnx_threads``: onnxruntime's intra-op threads per session (None: one per core). 1 by default: the
        graphs are small per-step ops, and on 2 cores one thread was faster alone (time to first audio behind the
        server 33-35 against 48 ms) and under load (8 clients: 13-16 against 4 of 24 streams in real time; benchmarks/README.md)."""
        from .runners import ArtifactInverter, ArtifactSynthesizer, ArtifactVocoder, load_runner
        from .vocoder_gen import GriffinLimVocoder

        runner = load_runner(path, threads=onnx_threads)
        if not runner.has("encoder") or not runner.has("text_encoder"):
            raise CheckpointError(f"{path}: the exported set needs at least the encoder and the synthesizer")
        voc = (ArtifactVocoder(runner) if runner.has("vocoder_cond")
               else GriffinLimVocoder(inverter=ArtifactInverter(runner) if runner.has("inverter") else None))  # fmt: skip
        cloner = cls(runner, ArtifactSynthesizer(runner), voc)
        if decoder_int8 is not None:
            cloner.decoder_int8 = decoder_int8
        return cloner

    @classmethod
    def from_default(cls, decoder_int8: bool | None = None) -> "Cloner":
        """The models shipped inside the package (``rtclone/models``); ``decoder_int8`` as in :meth:`from_dir`.

        When an exported ONNX set of them is shipped too (``rtclone/models/onnx``), that is used:
        onnxruntime is the fastest CPU runtime measured (``benchmarks/export.py``) and its parity
        with the torch modules is tested.
        """
        if (DEFAULT_MODELS_DIR / "onnx" / "manifest.json").is_file():
            cloner = cls.from_artifacts(DEFAULT_MODELS_DIR / "onnx", decoder_int8)
            cloner.postfilter = cloner.has_trained_vocoder and _card_flag(DEFAULT_MODELS_DIR / "card.json", "vocoder", "postfilter")
            return cloner
        if not (DEFAULT_MODELS_DIR / MODEL_FILES["synthesizer"]).is_file():
            raise CheckpointError(
                f"no default synthesizer is shipped in {DEFAULT_MODELS_DIR} yet; pass --models DIR (a folder with synthesizer.pt, e.g. RTVC's, or an export) "
                "or train one with `rtclone train synthesizer`"
            )
        return cls.from_dir(DEFAULT_MODELS_DIR, decoder_int8)

    # ---- the engine interface -------------------------------------------------------------
    def embed(self, audio: np.ndarray | str | Path | bytes, sr: int | None = None) -> np.ndarray:
        """Reference audio (array at ``sr``, a path or file bytes) → (256,) L2-normalised embedding."""
        from .audio import preprocess_wav
        from .encoder import embed_utterance

        wav = preprocess_wav(audio, sr)
        if hasattr(self.encoder, "embed_utterance"):  # an artifact runner
            return self.encoder.embed_utterance(wav)
        return embed_utterance(self.encoder, wav)

    def voice(self, refs: Any) -> np.ndarray:
        """The embedding to clone from one reference or a list of them, each a recording (a path or the file's
        bytes), a voice file (``rtclone embed``'s, or a ``.npy`` vector; told apart from audio by its first bytes)
        or an embedding array. Several give the L2-normalised mean of their L2-normalised embeddings: SV2TTS's
        speaker embedding, steadier than one short recording's."""
        from .voicefile import read_voice, unit_embedding

        items = list(refs) if isinstance(refs, (list, tuple)) else [refs]
        if not items:
            raise InputShapeError("no reference given")
        size = self.synthesizer.dims.speaker_embedding_size
        embs = []
        for ref in items:
            stored = ref if isinstance(ref, np.ndarray) else read_voice(ref)
            embs.append(self.embed(ref) if stored is None else unit_embedding(stored, size, _ref_name(ref)))
        if len(embs) == 1:
            return embs[0]
        mean = np.mean(embs, axis=0)
        norm = float(np.linalg.norm(mean))
        if norm < 1e-6:
            raise InputShapeError("the references' embeddings cancel out: no voice left in their mean")
        return (mean / norm).astype(np.float32)

    def stream(self, text: str, embedding: np.ndarray, options: SynthesisOptions = SynthesisOptions()) -> Iterator[np.ndarray]:
        """Yield float32 PCM chunks (16 kHz) of ``text`` spoken in the voice of ``embedding``."""
        from .synthesizer import TacotronOptions
        from .synthesizer import stream as synth_stream
        from .text import split_sentences
        from .vocoder_gen import VocoderOptions

        if not isinstance(text, str):
            raise TextError(f"text must be a string, got {type(text).__name__}")
        if len(text) > options.max_chars:
            raise LimitExceededError(f"text has {len(text)} characters; the limit is {options.max_chars}")
        chunks = split_sentences(text, first_chunk_words=options.first_chunk_words, max_words=options.max_chunk_words)
        if not chunks:
            raise TextError("text is empty")
        emb = self.conditioning(embedding)
        for i, chunk in enumerate(chunks):
            last = i == len(chunks) - 1
            topts = TacotronOptions(**{"seed": (options.seed + i) % 2**63, "max_decoder_steps": options.max_decoder_steps,
                                       "attention_window": options.attention_window,
                                       "end_of_text_frames": options.end_of_text_frames,
                                       **self.tacotron_overrides})  # fmt: skip
            vopts = VocoderOptions(seed=(options.seed + i) % 2**63, backend=options.backend,
                                   fade_out=options.fade_out_s if last else 0.0)  # fmt: skip
            for pcm in self._vocoder_stream(synth_stream(self.synthesizer, chunk, emb, topts), vopts):
                yield np.clip(pcm, -1.0, 1.0)  # de-emphasis can overshoot; PCM leaves here bounded

    def conditioning(self, embedding: np.ndarray) -> np.ndarray:
        """The checked embedding the synthesizer is conditioned on (see ``speaker_contrast``)."""
        emb = _check_embedding(embedding, self.synthesizer.dims.speaker_embedding_size)
        a = self.speaker_contrast
        if a == 0:
            return emb
        if self.speaker_mean is None:  # the mean was taken away after the strength was set
            raise OptionsError(_NO_SPEAKER_MEAN)
        pushed = emb + a * (emb - _check_embedding(self.speaker_mean, emb.shape[0]))
        norm = float(np.linalg.norm(pushed))
        if norm < 1e-6:
            raise InputShapeError("the embedding equals the speakers' mean: nothing to contrast")
        return (pushed / norm).astype(np.float32)

    def _vocoder_stream(self, mels: Any, vopts: Any) -> Iterator[np.ndarray]:
        from .vocoder_gen import stream as vocoder_stream

        if not self.has_trained_vocoder:
            return self.vocoder.stream(mels, vopts)
        if self.postfilter:
            vopts = dataclasses.replace(vopts, postfilter=True)
        return vocoder_stream(self.vocoder, mels, vopts, batcher=self.vocoder_batcher)

    def vocode(self, mel: np.ndarray, options: SynthesisOptions = SynthesisOptions()) -> np.ndarray:
        """Copy synthesis: a synthesizer-format mel (80, T) → float32 audio through this cloner's vocoder,
        vocoded as ``stream`` vocodes a last chunk (same seed, backend and fade-out)."""
        from .vocoder_gen import VocoderOptions

        vopts = VocoderOptions(seed=options.seed % 2**63, backend=options.backend, fade_out=options.fade_out_s)
        parts = list(self._vocoder_stream([mel], vopts))
        return np.clip(np.concatenate(parts), -1.0, 1.0).astype(np.float32) if parts else np.zeros(0, np.float32)

    def clone(self, text: str, voice: np.ndarray | str | Path | bytes, options: SynthesisOptions = SynthesisOptions(),
              sr: int | None = None) -> CloneResult:  # fmt: skip
        """Speak ``text`` in ``voice``: an embedding (D,) when ``sr`` is None, else reference audio
        (an array at ``sr``); or a path / file bytes of a recording or a voice file, or a list of
        references (see :meth:`voice`). Returns audio and timings."""
        t0 = time.perf_counter()
        is_embedding = isinstance(voice, np.ndarray) and sr is None and voice.shape == (self.synthesizer.dims.speaker_embedding_size,)
        if is_embedding:
            emb = voice
        elif sr is None and not isinstance(voice, np.ndarray):
            emb = self.voice(voice)
        else:
            emb = self.embed(voice, sr)
        parts, ttfa = [], None
        for chunk in self.stream(text, emb, options):
            if ttfa is None:
                ttfa = time.perf_counter() - t0
            parts.append(chunk)
        audio = np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)
        elapsed = time.perf_counter() - t0
        return CloneResult(audio, self.sample_rate, ttfa if ttfa is not None else elapsed, elapsed, len(parts))


def _card_flag(card: Path, section: str, key: str) -> bool:
    """A model folder card's ``section.key`` flag (False without a card or the key); a card that is
    not a JSON object with an object ``section`` entry, or a non-bool flag, is a CheckpointError."""
    if not card.is_file():
        return False
    try:
        flag = json.loads(card.read_text(encoding="utf-8")).get(section, {}).get(key, False)
    except (OSError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{card}: unreadable model card ({type(exc).__name__}: {exc})") from exc
    if not isinstance(flag, bool):
        raise CheckpointError(f"{card}: {section}.{key} must be true or false, got {flag!r}")
    return flag


def _check_embedding(embedding: Any, size: int) -> np.ndarray:
    emb = np.asarray(embedding, dtype=np.float32)
    if emb.shape != (size,):
        raise InputShapeError(f"speaker embedding must have shape ({size},), got {emb.shape}")
    if not np.all(np.isfinite(emb)):
        raise InputShapeError("speaker embedding holds NaN or inf")
    return emb


def _ref_name(ref: Any) -> str:
    return "<bytes>" if isinstance(ref, (bytes, bytearray, memoryview)) else "<array>" if isinstance(ref, np.ndarray) else str(ref)
