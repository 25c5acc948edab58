"""GE2E speaker encoder (SV2TTS): a 3-layer LSTM over 40-channel power mels → 256-d embedding.

The model uses RTVC's parameter names (``lstm.*``, ``linear.*``, ``similarity_weight``,
``similarity_bias``), so RTVC's ``encoder.pt`` and resemblyzer's shipped ``pretrained.pt`` load
into it strictly (see :func:`rtclone.checkpoints.load_encoder`).

An utterance is embedded the SV2TTS way: the preprocessed 16 kHz waveform is cut into partial
utterances of 160 mel frames (1.6 s), stepped at 1.3 partials per second (resemblyzer) or every
80 frames (RTVC); a last partial is kept only if the audio covers at least 75 % of it. All
partials run through the LSTM as one batch; the utterance embedding is the L2-normalised mean of
the partial embeddings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from .audio import SAMPLE_RATE, encoder_mel, preprocess_wav
from .errors import AudioError, AudioTooShortError, InputShapeError, OptionsError, SilentAudioError

HOP_LENGTH = 160  # samples per encoder mel frame (10 ms at 16 kHz)

# Cosine similarity at or above which `verify` says "same speaker". Calibrated with
# `rtclone.eval.eval_encoder` (the threshold at the equal error rate over all same/different
# utterance pairs) using resemblyzer's pretrained weights on synthetic voices made at run time:
# flite kal, kal16, awb, rms, slt and espeak-ng en-us, en+f3, en+m3, en-gb+f4, six Harvard
# sentences each (54 utterances of 2-3 s; 135 same and 1296 different pairs). That set gave an
# EER of 0.076 at a cosine of 0.772 (mean same-speaker cosine 0.85, different 0.55); the near
# twins kal/kal16 and the espeak-ng variants make up most of the errors (without them: EER 0.001
# at 0.758). `tests/test_eval.py::test_calibrated_threshold` re-runs this calibration.
# Synthetic voices are not microphone speech: recalibrate on your own data with
# `rtclone eval encoder DIR` and pass the reported threshold to `rtclone verify --threshold`.
DEFAULT_VERIFY_THRESHOLD = 0.77


@dataclass(frozen=True)
class EncoderDims:
    """Architecture of the speaker encoder (saved in rtclone checkpoints)."""

    n_mels: int = 40  # mel channels of the input
    hidden: int = 256  # LSTM hidden size
    n_layers: int = 3  # stacked LSTM layers
    embed: int = 256  # embedding size

    @classmethod
    def from_rtvc_state_dict(cls, sd: dict[str, torch.Tensor]) -> "EncoderDims":
        """Read the dims off the tensor shapes of an RTVC / resemblyzer encoder state dict."""
        w_ih0 = sd["lstm.weight_ih_l0"]  # (4 * hidden, n_mels)
        n_layers = 0
        while f"lstm.weight_ih_l{n_layers}" in sd:
            n_layers += 1
        four_h, n_mels = w_ih0.shape
        if four_h % 4:
            raise ValueError(f"lstm.weight_ih_l0 has {four_h} rows, not a multiple of 4")
        embed, hidden = sd["linear.weight"].shape
        if hidden * 4 != four_h:
            raise ValueError(f"linear.weight input {hidden} does not match the LSTM hidden size {four_h // 4}")
        return cls(n_mels=int(n_mels), hidden=int(hidden), n_layers=n_layers, embed=int(embed))


class SpeakerEncoder(nn.Module):
    """LSTM → last layer's final hidden state → linear → ReLU → L2 normalisation."""

    def __init__(self, dims: EncoderDims) -> None:
        super().__init__()
        self.dims = dims
        self.lstm = nn.LSTM(dims.n_mels, dims.hidden, dims.n_layers, batch_first=True)
        self.linear = nn.Linear(dims.hidden, dims.embed)
        # GE2E similarity scale and offset (used by training only; initial values from the paper).
        self.similarity_weight = nn.Parameter(torch.tensor([10.0]))
        self.similarity_bias = nn.Parameter(torch.tensor([-5.0]))

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        """Embed a batch of equal-length mel spectrograms: (B, T, n_mels) → (B, embed), unit norm."""
        _, (hidden, _) = self.lstm(mels)  # hidden: (n_layers, B, hidden)
        raw = torch.relu(self.linear(hidden[-1]))  # (B, embed)
        # The small floor keeps an all-zero ReLU output finite (it stays the zero vector).
        return raw / raw.norm(dim=1, keepdim=True).clamp_min(1e-12)


@dataclass(frozen=True)
class EmbedOptions:
    """How an utterance is cut into partials (validated here, in one place)."""

    rate: float | None = 1.3  # partials per second (resemblyzer); None: use frame_step instead
    frame_step: int | None = None  # frames between partial starts (RTVC uses 80); needs rate=None
    partial_frames: int = 160  # mel frames per partial utterance (1.6 s)
    min_coverage: float = 0.75  # keep the last partial only if the audio covers this fraction of it
    min_seconds: float = 0.5  # shorter (preprocessed) audio is an AudioTooShortError

    def __post_init__(self) -> None:
        if not isinstance(self.partial_frames, int) or isinstance(self.partial_frames, bool) or not 1 <= self.partial_frames <= 10_000:
            raise OptionsError(f"partial_frames must be an integer in [1, 10000], got {self.partial_frames!r}")
        if (self.rate is None) == (self.frame_step is None):
            raise OptionsError("set exactly one of rate (partials per second) and frame_step (frames)")
        if self.rate is not None:
            if not isinstance(self.rate, (int, float)) or isinstance(self.rate, bool) or not math.isfinite(self.rate) or self.rate <= 0:
                raise OptionsError(f"rate must be a positive number, got {self.rate!r}")
            step = round(SAMPLE_RATE / self.rate / HOP_LENGTH)
            if not 1 <= step <= self.partial_frames:
                min_rate = SAMPLE_RATE / (HOP_LENGTH * self.partial_frames)
                raise OptionsError(f"rate {self.rate} gives a step of {step} frames, outside [1, {self.partial_frames}]: "
                                   f"partials must overlap or touch (rate >= {min_rate:.3f}/s) and step >= 1 frame")
        else:
            fs = self.frame_step
            if not isinstance(fs, int) or isinstance(fs, bool) or not 1 <= fs <= self.partial_frames:
                raise OptionsError(f"frame_step must be an integer in [1, partial_frames={self.partial_frames}], got {fs!r}")
        if not isinstance(self.min_coverage, (int, float)) or not 0 < self.min_coverage <= 1:
            raise OptionsError(f"min_coverage must be in (0, 1], got {self.min_coverage!r}")
        if not isinstance(self.min_seconds, (int, float)) or not 0 <= self.min_seconds <= 60:
            raise OptionsError(f"min_seconds must be in [0, 60], got {self.min_seconds!r}")

    @property
    def step_frames(self) -> int:
        """Frames between the starts of two consecutive partials."""
        if self.frame_step is not None:
            return self.frame_step
        return int(round(SAMPLE_RATE / self.rate / HOP_LENGTH))


def compute_partial_slices(n_samples: int, options: EmbedOptions = EmbedOptions()) -> tuple[list[slice], list[slice]]:
    """Where to cut a waveform of ``n_samples`` and its mel into partials: (wav_slices, mel_slices).

    Partials start every ``options.step_frames`` frames and span ``partial_frames`` frames; they
    cover the whole utterance, so the last slices may reach past the end (pad the waveform with
    zeros up to ``wav_slices[-1].stop``). The last partial is dropped when the audio covers less
    than ``min_coverage`` of it, unless it is the only one.
    """
    if n_samples < 0:
        raise InputShapeError(f"n_samples must be >= 0, got {n_samples}")
    p, step = options.partial_frames, options.step_frames
    n_frames = -(-(n_samples + 1) // HOP_LENGTH)  # ceil((n_samples + 1) / hop)
    starts = list(range(0, max(1, n_frames - p + step + 1), step))
    last = starts[-1] * HOP_LENGTH
    if len(starts) > 1 and (n_samples - last) / (p * HOP_LENGTH) < options.min_coverage:
        starts.pop()
    mel_slices = [slice(s, s + p) for s in starts]
    wav_slices = [slice(s * HOP_LENGTH, (s + p) * HOP_LENGTH) for s in starts]
    return wav_slices, mel_slices


def _check_wav(wav: np.ndarray, options: EmbedOptions) -> np.ndarray:
    """A finite, non-silent, long-enough 1-D float32 waveform, or a typed error."""
    if isinstance(wav, torch.Tensor):
        wav = wav.detach().cpu().numpy()
    wav = np.asarray(wav)
    if wav.ndim != 1:
        raise InputShapeError(f"expected a mono 1-D waveform, got shape {wav.shape}")
    if not np.issubdtype(wav.dtype, np.floating):
        raise InputShapeError(f"expected a float waveform in [-1, 1], got dtype {wav.dtype}")
    wav = wav.astype(np.float32, copy=False)
    if wav.size == 0:
        raise AudioTooShortError("empty waveform: nothing to embed")
    if not np.all(np.isfinite(wav)):
        raise AudioError("the waveform holds NaN or infinite samples")
    if wav.size < options.min_seconds * SAMPLE_RATE:
        raise AudioTooShortError(f"{wav.size / SAMPLE_RATE:.2f} s of audio after preprocessing; "
                                 f"at least {options.min_seconds} s of speech is needed")
    if not np.any(wav):
        raise SilentAudioError("the waveform is all zeros")
    return wav


def utterance_partials(wav: np.ndarray, options: EmbedOptions = EmbedOptions()) -> tuple[np.ndarray, list[slice]]:
    """The partial mels of a preprocessed waveform: ((N, partial_frames, 40) float32, wav_slices)."""
    wav = _check_wav(wav, options)
    wav_slices, mel_slices = compute_partial_slices(wav.size, options)
    end = wav_slices[-1].stop
    if end > wav.size:
        wav = np.pad(wav, (0, end - wav.size))
    mel = encoder_mel(wav)  # (T, n_mels)
    starts = np.array([s.start for s in mel_slices])
    idx = starts[:, None] + np.arange(options.partial_frames)[None, :]  # (N, P)
    return mel[idx], wav_slices  # (N, P, n_mels)


def _model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def embed_partials(model: SpeakerEncoder, mels: np.ndarray | torch.Tensor) -> np.ndarray:
    """Run a batch of partial mels (N, T, n_mels) through the model in one call: (N, embed)."""
    x = torch.as_tensor(mels, dtype=torch.float32, device=_model_device(model))
    if x.ndim != 3 or x.shape[-1] != model.dims.n_mels:
        raise InputShapeError(f"expected mels of shape (N, T, {model.dims.n_mels}), got {tuple(x.shape)}")
    with torch.inference_mode():
        return model(x).float().cpu().numpy()


def _l2(v: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(v))
    if not math.isfinite(norm) or norm == 0.0:
        raise SilentAudioError("the encoder produced a zero embedding (no usable speech in the audio)")
    return (v / norm).astype(np.float32)


def embed_utterance(model: SpeakerEncoder, wav: np.ndarray, options: EmbedOptions = EmbedOptions(),
                    return_partials: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray, list[slice]]:
    """The L2-normalised embedding (embed,) of one preprocessed 16 kHz float32 utterance.

    ``wav`` must already be preprocessed (see :func:`rtclone.audio.preprocess_wav`). With
    ``return_partials`` the result is ``(embedding, partial_embeddings (N, embed), wav_slices)``.
    Raises AudioTooShortError, SilentAudioError, AudioError (NaN/inf) or InputShapeError.
    """
    mels, wav_slices = utterance_partials(wav, options)
    partials = embed_partials(model, mels)  # (N, embed)
    emb = _l2(partials.mean(axis=0))
    return (emb, partials, wav_slices) if return_partials else emb


def embed_speaker(model: SpeakerEncoder, wavs: Sequence[np.ndarray], options: EmbedOptions = EmbedOptions()) -> np.ndarray:
    """One speaker's embedding from several preprocessed utterances: the L2-normalised mean of their
    utterance embeddings. All partials of all utterances run as one batch."""
    if len(wavs) == 0:
        raise InputShapeError("embed_speaker needs at least one utterance")
    per_utt = [utterance_partials(w, options)[0] for w in wavs]
    partials = embed_partials(model, np.concatenate(per_utt, axis=0))  # (sum N, embed)
    bounds = np.cumsum([0] + [m.shape[0] for m in per_utt])
    utts = np.stack([_l2(partials[a:b].mean(axis=0)) for a, b in zip(bounds[:-1], bounds[1:])])
    return _l2(utts.mean(axis=0))


def embed_file(model: SpeakerEncoder, path: str | Path, options: EmbedOptions = EmbedOptions()) -> np.ndarray:
    """Load, preprocess (resample to 16 kHz, −30 dBFS increase-only, VAD trim) and embed a file."""
    return embed_utterance(model, preprocess_wav(Path(path)), options)


def speaker_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two embeddings (of any norm)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    if a.shape != b.shape or a.size == 0:
        raise InputShapeError(f"embeddings of different or empty shapes: {a.shape} vs {b.shape}")
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if not (np.isfinite(na) and np.isfinite(nb)) or na == 0 or nb == 0:
        raise InputShapeError("cosine similarity of a zero or non-finite embedding")
    return float(a @ b / (na * nb))


def verify(model: SpeakerEncoder, wav_a: np.ndarray, wav_b: np.ndarray,
           threshold: float = DEFAULT_VERIFY_THRESHOLD, options: EmbedOptions = EmbedOptions()) -> tuple[float, bool]:
    """Are two preprocessed utterances the same speaker? ``(cosine, cosine >= threshold)``."""
    cos = speaker_similarity(embed_utterance(model, wav_a, options), embed_utterance(model, wav_b, options))
    return cos, cos >= threshold
