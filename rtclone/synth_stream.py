"""The synthesizer's decoding engine, shared by offline and streaming inference.

:class:`Decoding` runs the Tacotron decoder one step at a time for a batch, with the stop token,
the max-length guard and the attention-failure checks (stuck / skipping alignment).
:class:`PostnetChunker` runs the (bidirectional, whole-sequence) CBHG postnet on chunks of frames
with left/right context, so streaming output matches the offline postnet within a tolerance.
The public entry points (``synthesize``, ``stream``) live in :mod:`rtclone.synthesizer`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from .errors import AttentionFailureError, MaxLengthError

if TYPE_CHECKING:  # pragma: no cover - typing only (avoids an import cycle)
    from .synthesizer import Tacotron, TacotronOptions


@dataclass
class StreamInfo:
    """What a synthesizer stream reports; updated in place while the stream runs."""

    r: int = 0  # frames per decoder step
    lookahead_frames: int = 0  # decoded frames that must exist past a chunk before it is emitted
    decoder_steps: int = 0  # decoder steps run so far
    frames_decoded: int = 0  # decoder (pre-postnet) frames made so far
    frames_emitted: int = 0  # postnet frames yielded so far
    chunks_emitted: int = 0
    stop_reason: str | None = None  # "stop_token" | "end_of_text" | "max_length" (when the guard truncates)


def length_limit_steps(n_chars: int, r: int, options: TacotronOptions) -> int:
    """Decoder steps allowed for a text of ``n_chars`` symbols (the max-length guard)."""
    frames = max(options.min_guard_frames, math.ceil(options.max_frames_per_char * n_chars))
    return max(1, min(options.max_decoder_steps, math.ceil(frames / r)))


class Decoding:
    """Step-by-step decoding of a batch of encoded texts.

    Iterating yields, per decoder step, ``(mels (B, n_mels, r), attention (B, T_text))``; items
    that already stopped keep being computed (the batch is decoded in lockstep) but are ignored.
    After the iteration ``stop_steps[i]`` is the step at which item i stopped and
    ``reasons[i]`` why ("stop_token" or "max_length"). Raises :class:`AttentionFailureError`
    or :class:`MaxLengthError` (unless ``options.on_max_length == "truncate"``).
    """

    def __init__(self, model: Tacotron, chars: torch.Tensor, speakers: torch.Tensor, options: TacotronOptions) -> None:
        self.model = model
        self.options = options
        self.r = model.r
        self.generator = None
        if options.seed is not None:
            self.generator = torch.Generator(device=chars.device).manual_seed(options.seed)
        self.mask = chars != 0  # (B, T_text)
        self.text_lens = self.mask.sum(1).tolist()
        self.memory, self.keys = model.encode(chars, speakers, self.generator)  # (B, T, ctx), (B, T, A)
        B = chars.size(0)
        self.max_steps = [length_limit_steps(n, self.r, options) for n in self.text_lens]
        self.stop_steps: list[int | None] = [None] * B
        self.reasons: list[str | None] = [None] * B
        self.n_steps = 0
        self._peak = [0] * B
        self._peak_since = [0] * B

    @property
    def done(self) -> bool:
        return all(s is not None for s in self.stop_steps)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        model, opt, r = self.model, self.options, self.r
        dec = model.decoder
        state = dec.init_state(self.memory)
        mel_w = dec.mel_weight(r)
        mel_w = mel_w.contiguous() if mel_w is not None else None
        mask = None if bool(self.mask.all()) else self.mask
        win = opt.attention_window
        track = opt.detect_attention_failure or win is not None or opt.end_of_text_frames is not None  # follow the peak
        positions = torch.arange(self.mask.size(1), device=self.mask.device).unsqueeze(0)  # (1, T_text)
        while not self.done:
            t = self.n_steps
            step_mask = mask
            if win is not None:
                peak = torch.tensor(self._peak, device=positions.device).unsqueeze(1)  # (B, 1)
                step_mask = (positions >= peak - win[0]) & (positions <= peak + win[1]) & self.mask  # (B, T_text)
            mels, stop, scores, state = dec.step(state, self.memory, self.keys, step_mask, r, self.generator, mel_w)
            self.n_steps += 1
            yield mels, scores
            stop_p = torch.sigmoid(stop).tolist() if opt.stop_threshold is not None else None
            peaks = scores.argmax(dim=1).tolist() if track else None
            for i, s in enumerate(self.stop_steps):
                if s is not None:
                    continue
                if peaks is not None and opt.detect_attention_failure:
                    self._check_attention(i, t, peaks[i])
                elif peaks is not None and peaks[i] != self._peak[i]:
                    self._peak[i], self._peak_since[i] = peaks[i], t
                if (opt.end_of_text_frames is not None and self._peak[i] == self.text_lens[i] - 1
                        and (t + 1 - self._peak_since[i]) * r >= opt.end_of_text_frames and (t + 1) * r > opt.min_frames):
                    self.stop_steps[i], self.reasons[i] = t, "end_of_text"
                    continue
                if stop_p is not None and stop_p[i] > opt.stop_threshold and (t + 1) * r > opt.min_frames:
                    self.stop_steps[i], self.reasons[i] = t, "stop_token"
                elif t + 1 >= self.max_steps[i]:
                    if opt.on_max_length == "error":
                        raise MaxLengthError(
                            f"item {i}: no stop predicted within {self.max_steps[i] * r} frames "
                            f"({self.text_lens[i]} symbols); raise max_decoder_steps / max_frames_per_char "
                            "or use on_max_length='truncate'"
                        )
                    self.stop_steps[i], self.reasons[i] = t, "max_length"

    def _check_attention(self, i: int, t: int, peak: int) -> None:
        opt = self.options
        prev = self._peak[i]
        if peak - prev > opt.max_skip_chars:
            raise AttentionFailureError(
                f"item {i}: attention skipped ahead from symbol {prev} to {peak} at decoder step {t} "
                f"(more than max_skip_chars={opt.max_skip_chars})"
            )
        if peak != prev:
            self._peak[i], self._peak_since[i] = peak, t
        elif (t - self._peak_since[i]) * self.r >= opt.max_stuck_frames:
            raise AttentionFailureError(
                f"item {i}: attention stuck on symbol {peak} of {self.text_lens[i]} for "
                f"{(t - self._peak_since[i]) * self.r} frames (max_stuck_frames={opt.max_stuck_frames})"
            )


class PostnetChunker:
    """Runs the postnet on chunks of decoder frames with left/right context.

    ``push`` takes decoder frames (n_mels, t) and returns the postnet frames that are now final
    (each emitted chunk had ``right`` decoded frames after it, or the end of the utterance);
    ``flush`` returns the rest once decoding has finished. The convolutions see exactly what the
    offline postnet sees when the context covers their receptive field; the bidirectional GRU's
    state is approximated from ``left``/``right`` frames (the error decays with the context).
    """

    def __init__(self, model: Tacotron, chunk: int, left: int, right: int, first_chunk: int | None = None) -> None:
        self.model = model
        self.chunk, self.left, self.right = chunk, left, right
        self.first_chunk = chunk if first_chunk is None else first_chunk
        self._frames: list[torch.Tensor] = []  # pieces of (n_mels, t)
        self._n = 0
        self.emitted = 0

    def _run(self, end: int) -> torch.Tensor:
        allf = torch.cat(self._frames, dim=1) if len(self._frames) > 1 else self._frames[0]
        self._frames = [allf]
        lo = max(0, self.emitted - self.left)
        hi = min(self._n, end + self.right)
        out = self.model.postnet_mel(allf[:, lo:hi].unsqueeze(0))[0]  # (n_mels, hi - lo)
        piece = out[:, self.emitted - lo:end - lo]
        self.emitted = end
        return piece

    def push(self, frames: torch.Tensor) -> list[torch.Tensor]:
        self._frames.append(frames)
        self._n += frames.size(1)
        ready = []
        while self._n - self.emitted >= self._size() + self.right:
            ready.append(self._run(self.emitted + self._size()))
        return ready

    def flush(self) -> list[torch.Tensor]:
        ready = []
        while self.emitted < self._n:
            ready.append(self._run(min(self._n, self.emitted + self._size())))
        return ready

    def _size(self) -> int:
        return self.first_chunk if self.emitted == 0 else self.chunk
