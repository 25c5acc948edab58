"""Tacotron synthesizer with speaker conditioning (RTVC-compatible), offline and streaming inference.

The model (:class:`Tacotron`, dims :class:`SynthesizerDims`) uses RTVC's tensor names, so an
RTVC ``synthesizer.pt`` state dict (170 tensors) loads strictly. Layers live in
:mod:`rtclone.tacotron_layers`, the step-by-step decoding engine in :mod:`rtclone.synth_stream`.

Inference:
- :func:`synthesize` — a batch of texts × speaker embeddings → (mel (80, T), alignment, stop step).
- :func:`stream` — one text → mel chunks (80, t) as the decoder makes them; the postnet runs on
  chunks with left/right context (``TacotronOptions.postnet_context``). The decoder frames are
  identical to offline decoding (same seeded steps); the postnet frames match the offline postnet
  within 1e-3 absolute (mels span [-4, 4]) with the default 12 frames of context — its convolutions
  exactly, its bidirectional GRU approximately (``tests/test_synthesizer.py`` checks this).
- :func:`quantize_decoder_int8` — an int8-weight copy of the decoder for faster CPU decoding.

Prenet dropout stays on at inference (as in Tacotron/RTVC, the model was trained that way); its
masks come from a generator seeded with ``TacotronOptions.seed``, so output is reproducible.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .errors import InputShapeError, OptionsError, TextError
from .synth_stream import Decoding, PostnetChunker, StreamInfo
from .tacotron_layers import CBHG, Decoder, Encoder
from .text import text_to_ids

__all__ = ["SynthesizerDims", "Tacotron", "TacotronOptions", "StreamInfo", "synthesize", "stream",
           "encode_texts", "check_embeddings", "postnet_context", "postnet_lookahead", "quantize_decoder_int8"]


@dataclass(frozen=True)
class SynthesizerDims:
    """Architecture dims of :class:`Tacotron` (defaults: RTVC's pretrained synthesizer)."""

    num_chars: int = 66  # symbol table size (rtclone.text.SYMBOLS)
    embed_dims: int = 512  # character embedding
    encoder_dims: int = 256  # encoder prenet and CBHG width (bi-GRU of encoder_dims // 2 per direction)
    encoder_K: int = 5  # encoder conv bank kernel sizes 1..K
    decoder_dims: int = 128  # attention GRU and attention width
    prenet_dims: int = 256  # decoder prenet width (RTVC: 2 × decoder_dims)
    lstm_dims: int = 1024  # the two residual decoder LSTMs
    postnet_dims: int = 512  # postnet CBHG width
    postnet_K: int = 5  # postnet conv bank kernel sizes 1..K
    num_highways: int = 4  # highway layers in each CBHG
    dropout: float = 0.5  # prenet dropout (on at inference too)
    speaker_embedding_size: int = 256  # concatenated to every encoder output
    n_mels: int = 80
    max_r: int = 20  # largest reduction factor (mel_proj has n_mels · max_r outputs)
    attn_filters: int = 32  # location features of the attention
    attn_kernel: int = 31

    def __post_init__(self) -> None:
        for name in ("num_chars", "embed_dims", "encoder_dims", "encoder_K", "decoder_dims", "prenet_dims", "lstm_dims",
                     "postnet_dims", "postnet_K", "speaker_embedding_size", "n_mels", "max_r", "attn_filters", "attn_kernel"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"SynthesizerDims.{name} must be a positive integer, got {v!r}")
        if self.encoder_dims % 2 or self.postnet_dims % 2:
            raise ValueError("encoder_dims and postnet_dims must be even (bidirectional GRUs)")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    @classmethod
    def small(cls) -> SynthesizerDims:
        """rtclone's default model: narrower than RTVC so the decoder runs well above real time on a CPU."""
        return cls(embed_dims=256, encoder_dims=128, decoder_dims=128, prenet_dims=128, lstm_dims=384,
                   postnet_dims=128, num_highways=2)

    @classmethod
    def tiny(cls) -> SynthesizerDims:
        """A very small model for tests and smoke runs."""
        return cls(embed_dims=32, encoder_dims=32, encoder_K=3, decoder_dims=32, prenet_dims=32, lstm_dims=64,
                   postnet_dims=32, postnet_K=3, num_highways=1, max_r=4, attn_filters=8, attn_kernel=7)

    @classmethod
    def from_rtvc_state_dict(cls, sd: dict[str, torch.Tensor]) -> SynthesizerDims:
        """Read the dims off the tensor shapes of an RTVC (or rtclone) synthesizer state dict."""
        n_mels = sd["postnet.conv_project2.conv.weight"].shape[0]
        encoder_dims = sd["encoder.pre_net.fc1.weight"].shape[0]
        decoder_dims, proj_in = sd["encoder_proj.weight"].shape
        conv = sd["decoder.attn_net.conv.weight"]
        return cls(
            num_chars=sd["encoder.embedding.weight"].shape[0],
            embed_dims=sd["encoder.embedding.weight"].shape[1],
            encoder_dims=encoder_dims,
            encoder_K=_count(sd, "encoder.cbhg.conv1d_bank.{}.conv.weight"),
            decoder_dims=decoder_dims,
            prenet_dims=sd["decoder.prenet.fc1.weight"].shape[0],
            lstm_dims=sd["decoder.rnn_input.weight"].shape[0],
            postnet_dims=sd["postnet.conv_project1.conv.weight"].shape[0],
            postnet_K=_count(sd, "postnet.conv1d_bank.{}.conv.weight"),
            num_highways=_count(sd, "encoder.cbhg.highways.{}.W1.weight"),
            speaker_embedding_size=proj_in - encoder_dims,
            n_mels=n_mels,
            max_r=sd["decoder.mel_proj.weight"].shape[0] // n_mels,
            attn_filters=conv.shape[0],
            attn_kernel=conv.shape[2],
        )


def _count(sd: dict[str, torch.Tensor], pattern: str) -> int:
    n = 0
    while pattern.format(n) in sd:
        n += 1
    if n == 0:
        raise KeyError(pattern.format(0))
    return n


class Tacotron(nn.Module):
    """Tacotron 1 with a CBHG encoder, location-sensitive attention, residual LSTM decoder, CBHG postnet.

    Mels are (B, n_mels, T) symmetric in [-4, 4]. The reduction factor r (frames per decoder step)
    is the ``decoder.r`` buffer (set with :meth:`set_r`). ``step`` counts training steps.
    """

    def __init__(self, dims: SynthesizerDims) -> None:
        super().__init__()
        self.dims = dims
        d = dims
        self.encoder = Encoder(d.num_chars, d.embed_dims, d.encoder_dims, d.encoder_K, d.num_highways, d.dropout)
        self.encoder_proj = nn.Linear(d.encoder_dims + d.speaker_embedding_size, d.decoder_dims, bias=False)
        self.decoder = Decoder(d.n_mels, d.encoder_dims, d.decoder_dims, d.prenet_dims, d.lstm_dims, d.dropout,
                               d.speaker_embedding_size, d.max_r, d.attn_filters, d.attn_kernel)
        self.postnet = CBHG(d.postnet_K, d.n_mels, d.postnet_dims, (d.postnet_dims, d.n_mels), d.num_highways)
        self.post_proj = nn.Linear(d.postnet_dims, d.n_mels, bias=False)
        self.register_buffer("step", torch.zeros(1, dtype=torch.long))
        self.register_buffer("stop_threshold", torch.tensor(-3.4, dtype=torch.float32))  # RTVC's (unused here)
        self.set_r(2)
        # teacher-forced passes run the decoder LSTMs over whole sequences (Decoder.teacher_forced);
        # False: the step loop (the reference; also what own_frames > 0 and int8 projections use)
        self.split_decoder = True

    @property
    def r(self) -> int:
        """Frames per decoder step."""
        return int(self.decoder.r)

    def set_r(self, r: int) -> None:
        if not 1 <= int(r) <= self.dims.max_r:
            raise OptionsError(f"reduction factor r must be in [1, {self.dims.max_r}], got {r}")
        self.decoder.r.fill_(int(r))

    def encode(self, chars: torch.Tensor, speakers: torch.Tensor,
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """chars (B, T_text) long, speakers (B, spk) → memory (B, T_text, enc+spk), keys (B, T_text, decoder_dims)."""
        memory = self.encoder(chars, speakers, generator)
        return memory, self.encoder_proj(memory)

    def postnet_mel(self, mels: torch.Tensor) -> torch.Tensor:
        """Decoder mels (B, n_mels, T) → postnet mels (B, n_mels, T)."""
        return self.post_proj(self.postnet(mels)).transpose(1, 2)

    def forward(self, chars: torch.Tensor, mels: torch.Tensor, speakers: torch.Tensor,
                generator: torch.Generator | None = None, own_frames: float = 0.0, own_parallel: bool = False,
                free_run: int = 0) -> tuple[torch.Tensor, ...]:
        """Teacher-forced pass (training, GTA export).

        chars (B, T_text) long (0 = pad), mels (B, n_mels, T) targets, speakers (B, spk) →
        decoder mels (B, n_mels, T), postnet mels (B, n_mels, T), attention (B, ceil(T/r), T_text),
        stop logits (B, T). ``own_frames`` (scheduled sampling): at each step each utterance is fed
        its own previous prediction (detached) instead of the target frame with this probability,
        so training sees the inputs inference sees; draws come from ``generator``. The prediction
        fed is the step loop's own (sequential: it may rest on earlier own frames) or, with
        ``own_parallel``, that of a first teacher-forced pass without gradients (parallel scheduled
        sampling, Duckworth et al. 2019): both passes run the whole-sequence decoder, so it costs one
        more forward pass (768-wide LSTMs, 16 utterances, one thread: ≈ 0.3 s on a ≈ 1.5 s step) where
        the step loop doubles the step (``benchmarks/train_synthesizer.py``).
        ``free_run`` > 0: also decode the first ``free_run`` frames free-running (each step fed its own
        previous frame, detached, as at inference) and return their postnet mels (B, n_mels, free_run)
        as a fifth output, from the same forward call (so DistributedDataParallel sees one pass).
        """
        if not 0.0 <= own_frames <= 1.0:
            raise ValueError(f"own_frames must be in [0, 1], got {own_frames}")
        if not 0 <= free_run <= mels.size(2):
            raise ValueError(f"free_run must be in [0, {mels.size(2)}] frames, got {free_run}")
        memory, keys = self.encode(chars, speakers, generator)
        mask = chars != 0
        if own_frames > 0.0 and own_parallel:
            with torch.no_grad():
                first, _, _ = self._forced(memory.detach(), keys.detach(), mask, mels, generator)
            own = torch.rand(mels.size(0), 1, mels.size(2), generator=generator, device=mels.device) < own_frames
            mels, own_frames = torch.where(own, first, mels), 0.0
        mel_out, attn, stop = self._forced(memory, keys, mask, mels, generator, own_frames)
        if free_run:
            free, _, _ = self._forced(memory, keys, mask, mels[:, :, :free_run], generator, 1.0)  # only its length is read
            return mel_out, self.postnet_mel(mel_out), attn, stop, self.postnet_mel(free)
        return mel_out, self.postnet_mel(mel_out), attn, stop

    def _forced(self, memory: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor, mels: torch.Tensor,
                generator: torch.Generator | None, own_frames: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The decoder fed ``mels`` (with ``own_frames``: sequential scheduled sampling) → decoder mels,
        attention, stop logits: the whole-sequence decoder when it can, else the step loop."""
        r, T = self.r, mels.size(2)
        state = self.decoder.init_state(memory)
        mel_w = self.decoder.mel_weight(r)
        if own_frames == 0.0 and mel_w is not None and self.split_decoder and self.decoder.can_split(memory):
            return self.decoder.teacher_forced(state, memory, keys, mask, mels, r, generator, mel_w)
        outs, attns, stops = [], [], []
        for t in range(0, T, r):
            if t > 0:
                target = mels[:, :, t - 1]  # teacher forcing
                if own_frames > 0.0:
                    own = torch.rand(target.size(0), 1, generator=generator, device=target.device) < own_frames
                    target = torch.where(own, state.prev_frame.detach(), target)
                state.prev_frame = target
            m, s, a, state = self.decoder.step(state, memory, keys, mask, r, generator, mel_w)
            outs.append(m)
            attns.append(a)
            stops.append(s.unsqueeze(1).expand(-1, r))
        mel_out = torch.cat(outs, dim=2)[:, :, :T]  # (B, n_mels, T)
        stop = torch.cat(stops, dim=1)[:, :T]  # (B, T)
        return mel_out, torch.stack(attns, dim=1), stop


def quantize_decoder_int8(model: Tacotron) -> Tacotron:
    """A copy of ``model`` whose decoder matmuls (GRU/LSTM cells, linears) use int8 weights (CPU).

    Dynamic quantization (torch.ao): weights are stored in int8, activations quantized per call.
    The autoregressive decoder is bound by weight memory traffic on a CPU, so this makes decoding
    ~2-3× faster; the encoder and postnet stay float32. For inference only (eval mode, CPU).
    """
    import copy
    import warnings

    from torch.ao.quantization import quantize_dynamic

    q = copy.deepcopy(model).cpu().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's deprecation notice (the API still works)
        q.decoder = quantize_dynamic(q.decoder, {nn.Linear, nn.LSTMCell, nn.GRUCell}, dtype=torch.qint8)
    return q


@dataclass(frozen=True)
class TacotronOptions:
    """Run-time options of synthesizer inference (validated here, in one place)."""

    seed: int | None = 0  # prenet-dropout seed (same seed → same mels); None: torch's global RNG
    max_decoder_steps: int = 2000  # absolute max-length guard, in decoder steps
    max_frames_per_char: float = 25.0  # guard proportional to the text: frames per input symbol
    min_guard_frames: int = 80  # ... but never below this many frames
    on_max_length: str = "error"  # "error": raise MaxLengthError at the guard; "truncate": stop there
    stop_threshold: float | None = 0.5  # stop when sigmoid(stop logit) exceeds this; None: never stop early
    min_frames: int = 10  # the stop token is ignored until this many frames were made (RTVC: 10)
    detect_attention_failure: bool = True  # raise AttentionFailureError on stuck/skipping attention
    max_stuck_frames: int = 120  # the attention peak stays on one symbol this long → stuck
    max_skip_chars: int = 8  # the attention peak jumps ahead by more symbols than this in one step → skip
    # (back, ahead): at each step attend only to symbols within [peak - back, peak + ahead] of the
    # previous step's attention peak (monotonic windowing); None: the whole text. Keeps a young
    # or unlucky model from jumping over words or going back; a well-aligned model never notices.
    attention_window: tuple[int, int] | None = None
    # stop once the attention peak has rested on the last symbol (end of text) this many frames,
    # even if the stop token has not fired; None: only the stop token (and the guards) stop
    end_of_text_frames: int | None = None
    first_chunk: int = 4  # streaming: frames in the first yielded chunk (small: audio starts early)
    postnet_chunk: int = 24  # streaming: frames per later chunk (larger: less postnet overhead)
    postnet_context: int = 12  # streaming: decoder frames of left and right context per postnet chunk

    def __post_init__(self) -> None:
        if self.seed is not None and (not _is_int(self.seed) or not 0 <= self.seed < 2**63):
            raise OptionsError(f"seed must be None or an integer in [0, 2**63), got {self.seed!r}")
        for name, lo, hi in (("max_decoder_steps", 1, 100_000), ("min_guard_frames", 1, 1_000_000),
                             ("min_frames", 0, 100_000), ("max_stuck_frames", 1, 1_000_000),
                             ("max_skip_chars", 1, 100_000), ("first_chunk", 1, 10_000), ("postnet_chunk", 1, 10_000),
                             ("postnet_context", 0, 10_000)):
            v = getattr(self, name)
            if not _is_int(v) or not lo <= v <= hi:
                raise OptionsError(f"{name} must be an integer in [{lo}, {hi}], got {v!r}")
        if not isinstance(self.max_frames_per_char, (int, float)) or not 0.5 <= self.max_frames_per_char <= 1000:
            raise OptionsError(f"max_frames_per_char must be a number in [0.5, 1000], got {self.max_frames_per_char!r}")
        if self.on_max_length not in ("error", "truncate"):
            raise OptionsError(f"on_max_length must be 'error' or 'truncate', got {self.on_max_length!r}")
        st = self.stop_threshold
        if st is not None and (not isinstance(st, (int, float)) or not 0.0 < st < 1.0):
            raise OptionsError(f"stop_threshold must be None or in (0, 1), got {self.stop_threshold!r}")
        w = self.attention_window
        if w is not None:
            if not (isinstance(w, (tuple, list)) and len(w) == 2 and all(_is_int(v) and 0 <= v <= 1000 for v in w) and w[1] >= 1):
                raise OptionsError(f"attention_window must be None or (back, ahead) integers with back >= 0 and ahead >= 1, got {w!r}")
            object.__setattr__(self, "attention_window", (int(w[0]), int(w[1])))
        if self.end_of_text_frames is not None and (not _is_int(self.end_of_text_frames) or not 1 <= self.end_of_text_frames <= 100_000):
            raise OptionsError(f"end_of_text_frames must be None or an integer in [1, 100000], got {self.end_of_text_frames!r}")
        if not isinstance(self.detect_attention_failure, bool):
            raise OptionsError("detect_attention_failure must be a bool")


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def encode_texts(texts: Sequence[str], num_chars: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Texts → padded symbol ids (B, T_text) long (cleaned, EOS appended, 0 = pad). Raises TextError."""
    if isinstance(texts, str) or len(texts) == 0:
        raise TextError("expected a non-empty list of texts")
    ids = [text_to_ids(t) for t in texts]
    for i, seq in enumerate(ids):
        if max(seq) >= num_chars:
            raise InputShapeError(f"text {i} has symbol id {max(seq)} but the model knows {num_chars} symbols")
    out = torch.zeros(len(ids), max(len(s) for s in ids), dtype=torch.long)
    for i, seq in enumerate(ids):
        out[i, :len(seq)] = torch.tensor(seq, dtype=torch.long)
    return out.to(device)


def check_embeddings(embeddings: np.ndarray | torch.Tensor, batch: int, size: int,
                     device: torch.device | str = "cpu") -> torch.Tensor:
    """Speaker embeddings (B, size) or (size,) for B = 1 → float32 tensor. Raises InputShapeError."""
    e = torch.as_tensor(np.asarray(embeddings, dtype=np.float32) if not isinstance(embeddings, torch.Tensor) else embeddings)
    if e.ndim == 1:
        e = e.unsqueeze(0)
    if e.ndim != 2 or e.shape[1] != size or e.shape[0] != batch:
        raise InputShapeError(f"speaker embeddings must have shape ({batch}, {size}), got {tuple(e.shape)}")
    e = e.to(device=device, dtype=torch.float32)
    if not bool(torch.isfinite(e).all()):
        raise InputShapeError("speaker embeddings contain NaN or infinite values")
    return e


def postnet_context(model: Tacotron, options: TacotronOptions) -> tuple[int, int]:
    """(left, right) decoder frames of context per streamed postnet chunk: ``options.postnet_context``,
    but never less than the postnet convolutions' receptive field (so they match offline exactly)."""
    left, right = CBHG.conv_receptive_field(model.dims.postnet_K)
    return max(left, options.postnet_context), max(right, options.postnet_context)


def postnet_lookahead(model: Tacotron, options: TacotronOptions) -> int:
    """Decoded frames needed past the end of a streamed chunk before it can be emitted."""
    return postnet_context(model, options)[1]


def _chunker(model: Tacotron, options: TacotronOptions) -> PostnetChunker:
    def up(n: int) -> int:  # whole decoder steps
        return -(-n // model.r) * model.r

    left, right = postnet_context(model, options)
    return PostnetChunker(model, up(options.postnet_chunk), left, right, first_chunk=up(options.first_chunk))


@torch.inference_mode()
def synthesize(model: Tacotron, texts: Sequence[str], embeddings: np.ndarray | torch.Tensor,
               options: TacotronOptions = TacotronOptions()) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """Offline synthesis of a batch.

    texts: B strings; embeddings: (B, speaker_embedding_size). Returns per text
    ``(mel (n_mels, T) float32, alignment (decoder_steps, T_text) float32, stop_step)`` where the
    mel holds the frames up to and including the stop step (T = (stop_step + 1) · r).
    Raises TextError, InputShapeError, AttentionFailureError, MaxLengthError.
    """
    device = next(model.parameters()).device
    chars = encode_texts(texts, model.dims.num_chars, device)
    spk = check_embeddings(embeddings, chars.size(0), model.dims.speaker_embedding_size, device)
    was_training = model.training
    model.eval()
    try:
        run = Decoding(model, chars, spk, options)
        mels, attns = [], []
        for m, a in run:
            mels.append(m)
            attns.append(a)
        mel = torch.cat(mels, dim=2)  # (B, n_mels, steps · r)
        attn = torch.stack(attns, dim=1)  # (B, steps, T_text)
        results = []
        for i, stop_step in enumerate(run.stop_steps):
            n = (stop_step + 1) * run.r
            post = model.postnet_mel(mel[i:i + 1, :, :n])[0]  # (n_mels, n)
            n_text = run.text_lens[i]
            results.append((post.float().cpu().numpy(), attn[i, :stop_step + 1, :n_text].float().cpu().numpy(), int(stop_step)))
        return results
    finally:
        model.train(was_training)


def stream(model: Tacotron, text: str, embedding: np.ndarray | torch.Tensor,
           options: TacotronOptions = TacotronOptions(), info: StreamInfo | None = None) -> Iterator[np.ndarray]:
    """Stream the mel of one text: yields float32 (n_mels, t) chunks as the decoder makes them.

    Each chunk is postnet output (``options.first_chunk`` frames first, then ``postnet_chunk``),
    emitted once ``info.lookahead_frames`` further frames are decoded; concatenated, the chunks
    equal :func:`synthesize`'s mel within the postnet-chunking tolerance (1e-3 absolute).
    ``info`` (optional) is updated in place; the generator also returns it. Bad text/embedding
    raise at the call; AttentionFailureError / MaxLengthError are raised from the iteration.
    """
    device = next(model.parameters()).device
    chars = encode_texts([text], model.dims.num_chars, device)
    spk = check_embeddings(embedding, 1, model.dims.speaker_embedding_size, device)
    return _stream(model, chars, spk, options, info if info is not None else StreamInfo())


def _stream(model: Tacotron, chars: torch.Tensor, spk: torch.Tensor, options: TacotronOptions,
            info: StreamInfo) -> Iterator[np.ndarray]:
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():  # never held across a yield (it is thread-wide state)
            run = Decoding(model, chars, spk, options)
            steps = iter(run)
        chunker = _chunker(model, options)
        info.r, info.lookahead_frames = run.r, postnet_lookahead(model, options)
        while True:
            with torch.inference_mode():
                item = next(steps, None)
                if item is None:
                    pieces = chunker.flush()
                    info.stop_reason = run.reasons[0]
                else:
                    pieces = chunker.push(item[0][0])
                    info.decoder_steps, info.frames_decoded = run.n_steps, run.n_steps * run.r
            for piece in pieces:
                yield _emit(piece, info)
            if item is None:
                return info
    finally:
        model.train(was_training)


def _emit(piece: torch.Tensor, info: StreamInfo) -> np.ndarray:
    info.frames_emitted += piece.size(1)
    info.chunks_emitted += 1
    return piece.float().cpu().numpy()
