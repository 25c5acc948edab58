"""Speaker-consistency loss for synthesizer training: the frozen speaker encoder judges the predicted mel.

The synthesizer predicts 80-channel normalised log mels of pre-emphasised audio (12.5 ms hop, 50 ms
window); the encoder reads 40-channel *power* mels of plain audio (10 ms hop, 25 ms window).
:class:`EncoderMelFromSynth` maps one to the other with fixed, differentiable operations: undo the
normalisation and the dB scale, spread the mel amplitudes onto linear bins with the filterbank's
pseudo-inverse, undo the pre-emphasis, square, keep every other bin (the 400-point FFT's frequencies),
halve (a Hann window of half the length passes half the power of a noise-like signal; 0.47 measured on
corpus v4), apply the encoder's filterbank and resample the frames in time. On ground-truth mels of
corpus v4 the encoder's embedding of the converted mel has a cosine of 0.89 with that of the audio
itself and still tells 40 voices apart (each converted utterance nearest its own voice's centroid: all of them
among converted centroids, 92 % among the recordings'; session 24, ad hoc): the conversion blurs but keeps the
voice, and the loss compares prediction and target through the same conversion.

:func:`speaker_consistency_loss` is ``1 - cos`` between the encoder's embeddings of the same
1.6 s window of the predicted and the recorded mel, averaged over the batch.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from .. import audio as A
from ..errors import InputShapeError
from ..mel_inverter import amplitude

WINDOW_POWER_RATIO = 0.5  # power of a 400-sample Hann frame relative to an 800-sample one, noise-like input


class EncoderMelFromSynth(nn.Module):
    """(B, 80, T) synthesizer mels → (B, U, 40) encoder power mels, U = 1 + (T - 1) * 200 // 160."""

    def __init__(self) -> None:
        super().__init__()
        pinv = torch.tensor(A._synth_pinv(), dtype=torch.float32)  # (401, 80)
        omega = np.linspace(0.0, np.pi, pinv.shape[0])
        emphasis = np.abs(1.0 - A.PREEMPHASIS * np.exp(-1j * omega))  # |H(w)| of the pre-emphasis filter
        # only the bins the encoder's FFT has (every other one), pre-emphasis undone there
        spread = pinv[::2] / torch.tensor(np.maximum(emphasis[::2], 1e-3), dtype=torch.float32)[:, None]  # (201, 80)
        self.register_buffer("spread", spread, persistent=False)
        fb = torch.tensor(A._mel_basis(A.SAMPLE_RATE, A.ENC_N_FFT, A.ENC_N_MELS, 0.0, None))  # (40, 201)
        self.register_buffer("fb", fb * WINDOW_POWER_RATIO, persistent=False)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        if mel.dim() != 3 or mel.size(1) != A.SYN_N_MELS or mel.size(2) < 1:
            raise InputShapeError(f"expected (B, {A.SYN_N_MELS}, T >= 1) mels, got {tuple(mel.shape)}")
        amp = amplitude(mel)  # (B, 80, T) mel amplitude
        power = torch.relu(self.spread @ amp) ** 2  # (B, 201, T)
        enc = self.fb @ power  # (B, 40, T)
        T = enc.size(2)
        U = 1 + (T - 1) * A.SYN_HOP // A.ENC_HOP
        t = torch.arange(U, device=mel.device, dtype=mel.dtype) * (A.ENC_HOP / A.SYN_HOP)
        i0 = t.floor().long().clamp(max=T - 1)
        i1 = (i0 + 1).clamp(max=T - 1)
        frac = t - i0.to(t.dtype)
        return (enc[..., i0] * (1 - frac) + enc[..., i1] * frac).transpose(1, 2)  # (B, U, 40)


def crop_starts(mel_lens: torch.Tensor, frames: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A random start per item such that ``frames`` synthesizer frames fit in its length (0 when shorter)."""
    room = (mel_lens - frames).clamp(min=0) + 1
    u = torch.rand(len(mel_lens), generator=generator)
    return (u * room.cpu().to(torch.float32)).floor().long().clamp(max=room.cpu() - 1)


def speaker_consistency_loss(encoder: nn.Module, conv: EncoderMelFromSynth, pred: torch.Tensor, target: torch.Tensor,
                             mel_lens: torch.Tensor, frames: int = 128,
                             generator: torch.Generator | None = None) -> torch.Tensor:
    """Mean over the batch of 1 - cos(encoder(window of pred), encoder(same window of target)).

    ``pred`` / ``target``: (B, 80, T) normalised mels; a window of ``frames`` synthesizer frames
    (128 = the encoder's 1.6 s partial) at a random start inside each item's length; items shorter
    than the window keep their padding (silence). The encoder's weights get no gradient.
    """
    if pred.shape != target.shape:
        raise InputShapeError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    frames = min(frames, pred.size(2))
    starts = crop_starts(mel_lens, frames, generator)
    idx = (starts[:, None] + torch.arange(frames)[None]).to(pred.device)  # (B, frames)
    idx = idx[:, None, :].expand(-1, pred.size(1), -1)
    p = conv(torch.gather(pred, 2, idx))
    with torch.no_grad():
        e_t = encoder(conv(torch.gather(target, 2, idx)))
    e_p = encoder(p)
    return (1.0 - (e_p * e_t).sum(dim=1)).mean()


class SpeakerLoss:
    """``weight`` × :func:`speaker_consistency_loss` with a given judge, converter and window generator.

    ``free_run`` = 0: the loss judges a random window of the teacher-forced postnet mel; ``free_run`` = F > 0:
    it judges the first F frames decoded free-running (as at inference; the synthesizer's forward makes them,
    see :meth:`rtclone.synthesizer.Tacotron.forward`) against the recording's first F frames.
    """

    def __init__(self, weight: float, encoder: nn.Module, conv: EncoderMelFromSynth,
                 generator: torch.Generator | None = None, free_run: int = 0) -> None:
        self.weight, self.encoder, self.conv, self.generator = float(weight), encoder, conv, generator
        self.free_run = int(free_run)

    @classmethod
    def pretrained(cls, weight: float, device: torch.device | str = "cpu", free_run: int = 0) -> "SpeakerLoss":
        return cls(weight, frozen_encoder(device), EncoderMelFromSynth().to(device), free_run=free_run)

    def reseeded(self, seed: int) -> "SpeakerLoss":
        """The same loss drawing its windows from its own generator seeded with ``seed`` (validation:
        the same windows at every call, and no draw taken from the generator of the prenet's dropout)."""
        return SpeakerLoss(self.weight, self.encoder, self.conv, torch.Generator().manual_seed(seed), self.free_run)

    def __call__(self, pred: torch.Tensor, target: torch.Tensor, mel_lens: torch.Tensor) -> torch.Tensor:
        return self.weight * speaker_consistency_loss(self.encoder, self.conv, pred, target, mel_lens,
                                                      generator=self.generator)


def frozen_encoder(device: torch.device | str = "cpu") -> nn.Module:
    """The pretrained encoder in eval mode with its weights frozen (the judge, not a trainee)."""
    from .. import checkpoints

    enc = checkpoints.load_encoder(device=device).eval()
    for p in enc.parameters():
        p.requires_grad_(False)
    return enc
