"""WaveRNN generation: options, backend dispatch, unbatched/streaming and batched (fold + crossfade).

Determinism: the sample loop consumes pre-drawn uniforms ``torch.rand(B, T, 2)`` from a generator
seeded with ``options.seed`` (the shared spec), so every backend sees the same random numbers.

Unbatched generation *is* streaming with the whole mel as one chunk: the conditioning is computed in
fixed blocks of ``cond_block`` frames (each from a window of ``block + 2 pad`` frames, zeros outside
the utterance), the loop runs block by block carrying its state, and uniforms are drawn block by
block (``torch.rand`` draws the same numbers in pieces as at once). So a stream fed any chunking of
the mels yields exactly the unbatched waveform. A block is made once its last frame plus
``model.lookahead`` frames (the upsample network's receptive field) have arrived.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

import numpy as np
import scipy.signal
import torch
import torch.nn.functional as F

from . import audio, lpc
from .errors import BackendUnavailableError, InputShapeError, OptionsError
from .griffin_lim import SegmentPlan, stream_segments
from .postfilter import LAG as POSTFILTER_LAG
from .postfilter import MelEnvelopeFilter, check_max_gain, postfilter

if TYPE_CHECKING:
    from .mel_inverter import MelInverter
    from .vocoder import WaveRNN
    from .vocoder_batch import BatchLane, VocoderBatcher

BACKENDS = ("auto", "torch", "cpu-native", "triton")
State = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
Runner = Callable[[torch.Tensor, torch.Tensor, "State | None"], tuple[torch.Tensor, State]]


@dataclass(frozen=True)
class VocoderOptions:
    """Run-time options of vocoder generation (validated here, in one place)."""

    batched: bool = False  # fold the utterance into overlapping segments generated in parallel (not for stream)
    target: int = 8000  # batched: samples per fold (RTVC inference 8000)
    overlap: int = 800  # batched: samples shared by neighbouring folds (half warm-up, half crossfade)
    seed: int = 0  # seed of the pre-drawn uniforms: the same seed gives the same audio
    backend: str = "auto"  # "auto" (cpu-native if available, else torch) | "torch" | "cpu-native" | "triton"
    mu_law: bool | None = None  # mu-law-decode the output; None: as the model was trained (dims.mu_law, RAW)
    de_emphasis: bool = True  # undo the 0.97 pre-emphasis the vocoder was trained on (RTVC)
    fade_out: float = 0.25  # seconds faded to silence at the very end (RTVC 0.25; stream holds this back)
    cond_block: int = 8  # mel frames per conditioning block (streaming granularity)
    sparse_block: tuple[int, int] = (16, 1)  # block shape the native kernels pack the weights with
    threads: int = 1  # threads of the native kernel
    # mel-envelope post-filter (rtclone.postfilter): pull each band of the output to the mel's level
    # (removes an under-trained WaveRNN's noise floor); one 800-point FFT pair per hop, holds back 600 samples (37.5 ms)
    postfilter: bool = False
    postfilter_max_gain: float = 4.0  # the most a band is raised (x4 = +12 dB); lowering is unbounded

    def __post_init__(self) -> None:
        for name in ("batched", "de_emphasis", "postfilter"):
            if not isinstance(getattr(self, name), bool):
                raise OptionsError(f"{name} must be a bool, got {getattr(self, name)!r}")
        if self.mu_law is not None and not isinstance(self.mu_law, bool):
            raise OptionsError(f"mu_law must be None or a bool, got {self.mu_law!r}")
        for name, lo, hi in (("target", 1, 10**7), ("overlap", 0, 10**6), ("cond_block", 1, 10_000), ("threads", 1, 256)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
                raise OptionsError(f"{name} must be an integer in [{lo}, {hi}], got {v!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or not 0 <= self.seed < 2**63:
            raise OptionsError(f"seed must be an integer in [0, 2**63), got {self.seed!r}")
        if self.backend not in BACKENDS:
            raise OptionsError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if not isinstance(self.fade_out, (int, float)) or isinstance(self.fade_out, bool) or not 0.0 <= self.fade_out <= 10.0:
            raise OptionsError(f"fade_out must be seconds in [0, 10], got {self.fade_out!r}")
        check_max_gain(self.postfilter_max_gain)
        sb = self.sparse_block
        if not (isinstance(sb, tuple) and len(sb) == 2 and all(isinstance(v, int) and v >= 1 for v in sb)):
            raise OptionsError(f"sparse_block must be a pair of positive ints, got {sb!r}")


def resolve_options(options: VocoderOptions | None, overrides: dict[str, Any]) -> VocoderOptions:
    """``options`` (default ``VocoderOptions()``) with keyword overrides applied; unknown keys are an OptionsError."""
    options = options if options is not None else VocoderOptions()
    known = {f.name for f in dataclasses.fields(VocoderOptions)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise OptionsError(f"unknown vocoder option(s) {unknown}; known: {sorted(known)}")
    return dataclasses.replace(options, **overrides) if overrides else options


def check_mel(mel: Any, feat_dims: int = 80, allow_empty: bool = False) -> torch.Tensor:
    """Validate one mel (feat, T) (or (1, feat, T)) -> float32 CPU tensor; InputShapeError otherwise."""
    if isinstance(mel, np.ndarray):
        if not np.issubdtype(mel.dtype, np.number):
            raise InputShapeError(f"mel must be numeric, got dtype {mel.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(mel, dtype=np.float32))
    elif isinstance(mel, torch.Tensor):
        t = mel.detach().float().cpu()
    else:
        raise InputShapeError(f"mel must be a numpy array or a tensor, got {type(mel).__name__}")
    if t.dim() == 3 and t.shape[0] == 1:
        t = t[0]
    if t.dim() != 2 or t.shape[0] != feat_dims:
        raise InputShapeError(f"mel must have shape ({feat_dims}, T), got {tuple(t.shape)}")
    if t.shape[1] == 0 and not allow_empty:
        raise InputShapeError("mel has zero frames")
    if not torch.isfinite(t).all():
        raise InputShapeError("mel contains NaN or infinite values")
    return t


# ---- backends ----------------------------------------------------------------------------------
def _kernel_runner(model: "WaveRNN", backend: str, options: VocoderOptions) -> Runner:
    try:
        if backend == "cpu-native":
            from .kernels import cpu as mod

            cls_name = "NativeWaveRNN"
        else:
            from .kernels import triton as mod  # type: ignore[no-redef]

            cls_name = "TritonWaveRNN"
        if not mod.available():
            raise BackendUnavailableError(f"{backend} backend unavailable: {mod.unavailable_reason()}")
        cls = getattr(mod, cls_name)
    except (ImportError, AttributeError) as exc:
        raise BackendUnavailableError(f"{backend} backend unavailable: {type(exc).__name__}: {exc}") from exc
    state = {k: v.detach() for k, v in model.state_dict().items()}
    # Packing the weights costs 0.02-0.3 s, so a kernel is built once per model and reused until a
    # weight changes: in-place updates (optimizer steps, load_state_dict) bump a tensor's _version.
    key = (backend, options.sparse_block, options.threads, tuple((k, v._version, v.data_ptr()) for k, v in state.items()))
    cached = _KERNELS.get(model)
    if cached is not None and cached[0] == key:
        return cached[1]
    runner = cls(state, mode=model.dims.mode, bits=model.dims.bits, block=options.sparse_block, threads=options.threads).generate
    _KERNELS[model] = (key, runner)
    return runner


_KERNELS: "weakref.WeakKeyDictionary[Any, tuple[tuple, Runner]]" = weakref.WeakKeyDictionary()


def make_runner(model: "WaveRNN", options: VocoderOptions) -> Runner:
    """The sample loop of ``options.backend``: (cond, uniforms, state) -> (samples, state)."""
    if options.backend == "torch":
        return model.sample_loop
    if options.backend == "auto":
        try:
            return _kernel_runner(model, "cpu-native", options)
        except BackendUnavailableError as exc:
            warnings.warn(f"{exc}; falling back to the (slow) torch reference vocoder loop", RuntimeWarning, stacklevel=3)
            return model.sample_loop
    return _kernel_runner(model, options.backend, options)


# ---- post-processing ----------------------------------------------------------------------------
def _use_mu_law(model: "WaveRNN", options: VocoderOptions) -> bool:
    dims = model.dims
    if options.mu_law is None:
        return dims.mode == "RAW" and dims.mu_law
    if options.mu_law and dims.mode != "RAW":
        raise OptionsError("mu_law decoding applies to RAW-mode vocoders only")
    return options.mu_law


def _check_postfilter(model: "WaveRNN", options: VocoderOptions) -> None:
    d = model.dims
    if options.postfilter and (d.feat_dims != audio.SYN_N_MELS or d.hop_length != audio.SYN_HOP):
        raise OptionsError(f"the post-filter works on {audio.SYN_N_MELS}-channel synthesizer mels at hop {audio.SYN_HOP}; "
                           f"this vocoder has {d.feat_dims} channels, hop {d.hop_length}")


def _decode(samples: torch.Tensor, bits: int, mu_law: bool) -> np.ndarray:
    """Loop output (model-input domain) -> float64 linear audio, same shape."""
    if mu_law:
        labels = torch.round(audio.float_to_label(samples.float(), bits)).long()
        samples = audio.mulaw_decode(labels, bits)
    return samples.double().numpy()


def _fade_tail(y: np.ndarray, n: int) -> None:
    """Fade the last ``n`` samples of ``y`` linearly to zero, in place."""
    if n > 0:
        y[-n:] *= np.linspace(1.0, 0.0, n)


def _hold_back(pieces: Iterable[np.ndarray], hold: int) -> Iterator[np.ndarray]:
    """``pieces`` as float32, re-cut so that the last ``hold`` samples wait for the end of the stream
    and are then faded to silence (``_fade_tail``): each piece is passed on as soon as more than
    ``hold`` samples are pending."""
    pending = np.zeros(0)
    for piece in pieces:
        pending = np.concatenate([pending, piece])
        cut = len(pending) - hold
        if cut > 0:
            yield pending[:cut].astype(np.float32)
            pending = pending[cut:]
    _fade_tail(pending, min(hold, len(pending)))
    if len(pending):
        yield pending.astype(np.float32)


class _DeEmphasis:
    """Stateful ``audio.de_emphasis`` (y[n] = x[n] + k y[n-1]) for chunked audio."""

    def __init__(self, k: float = audio.PREEMPHASIS) -> None:
        self.b, self.a = [1.0], [1.0, -k]
        self.zi = np.zeros(1)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        y, self.zi = scipy.signal.lfilter(self.b, self.a, x, zi=self.zi)
        return y


# ---- unbatched / streaming ---------------------------------------------------------------------
class _MelBuffer:
    """Received mel frames; windows in the caller's frame indices with zeros outside [0, n_frames)."""

    def __init__(self, feat: int) -> None:
        self.frames = torch.zeros(feat, 0)
        self.offset = 0  # absolute index of frames[:, 0]
        self.n_frames = 0

    def append(self, mel: torch.Tensor) -> None:
        self.frames = torch.cat([self.frames, mel], 1)
        self.n_frames += mel.shape[1]

    def window(self, start: int, length: int) -> torch.Tensor:
        out = torch.zeros(self.frames.shape[0], length)
        lo, hi = max(start, self.offset), min(start + length, self.n_frames)
        if hi > lo:
            out[:, lo - start : hi - start] = self.frames[:, lo - self.offset : hi - self.offset]
        return out

    def drop_before(self, index: int) -> None:
        cut = min(max(0, index - self.offset), self.frames.shape[1])
        self.frames, self.offset = self.frames[:, cut:], self.offset + cut


@dataclass(frozen=True)
class StreamInfo:
    """Latency figures of ``stream`` for a model and options (computed, not hand-kept)."""

    block_frames: int  # mel frames per conditioning block: PCM comes in multiples of block * hop samples
    lookahead_frames: int  # frames after a block the upsample network needs (its receptive field)
    first_chunk_frames: int  # mel frames that must arrive before the first PCM chunk
    holdback_samples: int  # samples held back until the end of the stream for the fade-out
    postfilter_lag_samples: int = 0  # samples the post-filter holds until its last frame is complete


def stream_info(model: "WaveRNN", options: VocoderOptions | None = None, **overrides: Any) -> StreamInfo:
    """How many mel frames ``stream`` needs before it yields, and what it holds back."""
    opts = resolve_options(options, overrides)
    hold = int(round(opts.fade_out * model.dims.sample_rate))
    # the filter emits up to the start of its first incomplete frame: half a window plus a hop behind
    lag = POSTFILTER_LAG if opts.postfilter else 0
    blocks = (hold + lag) // (opts.cond_block * model.dims.hop_length) + 1  # pending must exceed the hold-back
    first = blocks * opts.cond_block + max(model.lookahead, 1)
    return StreamInfo(opts.cond_block, model.lookahead, first, hold, lag)


def stream(
    model: "WaveRNN",
    mel_chunks: Iterable[np.ndarray | torch.Tensor],
    options: VocoderOptions | None = None,
    *,
    batcher: "VocoderBatcher | None" = None,
    **overrides: Any,
) -> Iterator[np.ndarray]:
    """Yield float32 PCM chunks at 16 kHz as mel chunks (feat, t) arrive.

    The concatenation equals ``generate(mel, batched=False)`` of the concatenated mels for the same
    options. Latency: a block of ``cond_block`` frames is made once ``model.lookahead`` more frames
    have arrived; the last ``fade_out`` seconds are held back until the stream ends.
    With a ``batcher`` (:class:`rtclone.vocoder_batch.VocoderBatcher`) the blocks run through it,
    stacked with the blocks of other streams using it; the stream holds a lane of it while it runs.
    """
    opts = resolve_options(options, overrides)
    if opts.batched:
        raise OptionsError("streaming generation is sequential: use batched=False")
    mu_law = _use_mu_law(model, opts)
    _check_postfilter(model, opts)
    runner = make_runner(model, opts)
    if batcher is None:
        return _stream(model, iter(mel_chunks), opts, runner, mu_law)
    return _batched_stream(model, iter(mel_chunks), opts, runner, mu_law, batcher)


def _batched_stream(model: "WaveRNN", chunks: Iterator[Any], opts: VocoderOptions, runner: Runner, mu_law: bool,
                    batcher: "VocoderBatcher") -> Iterator[np.ndarray]:  # fmt: skip
    with batcher.lane(runner) as lane:  # opened on the first pull, closed when the stream ends or is closed
        yield from _stream(model, chunks, opts, runner, mu_law, lane)


def _stream(model: "WaveRNN", chunks: Iterator[Any], opts: VocoderOptions, runner: Runner, mu_law: bool,
            lane: "BatchLane | None" = None) -> Iterator[np.ndarray]:  # fmt: skip
    """The stream's blocks, run by ``runner`` or, with a batcher ``lane``, submitted to it: then the
    next block's conditioning is computed while a block runs (when its frames are in), and the lane
    is told it is idle while the stream waits for mel chunks."""
    d = model.dims
    hop, fb, pad = d.hop_length, opts.cond_block, d.pad
    need_after = max(model.lookahead, 1)  # >= 1 so a made block never passes the final (T - 1) * hop
    hold = int(round(opts.fade_out * d.sample_rate))
    gen = torch.Generator().manual_seed(opts.seed)
    de_emph = _DeEmphasis() if opts.de_emphasis else None
    envelope = MelEnvelopeFilter(opts.postfilter_max_gain) if opts.postfilter else None
    order = getattr(d, "lpc_order", 0)  # artifacts exported before LPC vocoders carry no such dim
    excitation = lpc.LpcSynthesis(order, hop) if order else None
    buf = _MelBuffer(d.feat_dims)
    state: State | None = None
    prefetched: torch.Tensor | None = None  # conditioning of block k, computed while block k - 1 ran
    k = 0  # next block

    def conditioning(j: int, n: int) -> torch.Tensor:
        window = buf.window(j * fb - pad, fb + 2 * pad)  # (feat, fb + 2 pad)
        return model.conditioning(window.unsqueeze(0))[:, :n]  # (1, n, cond)

    def make_block(n: int, next_ready: bool = False) -> np.ndarray:
        nonlocal state, prefetched
        cond = prefetched if prefetched is not None else conditioning(k, n)
        prefetched = None
        uniforms = torch.rand(1, n, 2, generator=gen)
        if lane is None:
            samples, state = runner(cond, uniforms, state)
        else:
            future = lane.submit(cond, uniforms, state)
            if next_ready:  # block k + 1 has all its frames: same window now as later
                prefetched = conditioning(k + 1, n)
            samples, state = lane.wait(future)
        y = _decode(samples[0], d.bits, mu_law)
        if excitation is not None:
            y = excitation.push(y)
        buf.drop_before((k + 1) * fb - pad)
        return finish_samples(envelope.push(y) if envelope is not None else y)

    def finish_samples(y: np.ndarray) -> np.ndarray:
        return de_emph(y) if de_emph is not None else y

    def blocks() -> Iterator[np.ndarray]:
        nonlocal k
        for chunk in _announce_waits(chunks, None if lane is None else lane.idle):
            mel = check_mel(chunk, d.feat_dims, allow_empty=True)
            buf.append(mel)
            if excitation is not None:
                excitation.add_mel(mel.numpy())
            if envelope is not None:
                envelope.add_mel(mel.numpy())
            while (k + 1) * fb + need_after <= buf.n_frames:
                yield make_block(fb * hop, (k + 2) * fb + need_after <= buf.n_frames)
                k += 1
        if buf.n_frames == 0:
            raise InputShapeError("mel has zero frames")
        wave_len = (buf.n_frames - 1) * hop
        while k * fb * hop < wave_len:
            yield make_block(min(fb * hop, wave_len - k * fb * hop))
            k += 1
        if envelope is not None:
            yield finish_samples(envelope.finish())

    yield from _hold_back(blocks(), hold)


def _announce_waits(chunks: Iterator[Any], idle: Callable[[], None] | None) -> Iterator[Any]:
    """``chunks``, calling ``idle()`` before each pull (the producer, e.g. the synthesizer, may take a while)."""
    if idle is None:
        yield from chunks
        return
    while True:
        idle()
        try:
            chunk = next(chunks)
        except StopIteration:
            return
        yield chunk


# ---- batched ------------------------------------------------------------------------------------
def fold_with_overlap(x: torch.Tensor, target: int, overlap: int) -> torch.Tensor:
    """(T, C) -> (n, target + 2 overlap, C): fold i starts at i (target + overlap); zeros pad the end."""
    step, length = target + overlap, target + 2 * overlap
    n = max(1, math.ceil((x.shape[0] - overlap) / step))
    x = F.pad(x, (0, 0, 0, n * step + overlap - x.shape[0]))
    return x.unfold(0, length, step).permute(0, 2, 1).contiguous()  # (n, length, C)


def xfade_and_unfold(y: np.ndarray, overlap: int, fade: str = "power") -> np.ndarray:
    """Inverse of ``fold_with_overlap`` for (n, L) signals -> (n (L - overlap) + overlap,).

    In each overlap the first half is the next fold's warm-up (weight 0; the previous fold keeps
    weight 1), then the two cross-fade: ``fade="power"`` equal-power (sin/cos, w_in^2 + w_out^2 = 1)
    for independent signals, ``"linear"`` (w_in + w_out = 1) reconstructs identical copies exactly.
    """
    n, length = y.shape
    step = length - overlap
    warm = overlap // 2
    t = np.linspace(-1.0, 1.0, overlap - warm)
    if fade == "power":
        f_in, f_out = np.sqrt(0.5 * (1.0 + t)), np.sqrt(0.5 * (1.0 - t))
    elif fade == "linear":
        f_in, f_out = 0.5 * (1.0 + t), 0.5 * (1.0 - t)
    else:
        raise OptionsError(f"fade must be 'power' or 'linear', got {fade!r}")
    w_in, w_out = np.concatenate([np.zeros(warm), f_in]), np.concatenate([np.ones(warm), f_out])
    y = np.array(y, dtype=np.float64)
    if overlap:
        y[1:, :overlap] *= w_in
        y[:-1, -overlap:] *= w_out
    out = np.zeros(n * step + overlap)
    for i in range(n):
        out[i * step : i * step + length] += y[i]
    return out


def generate(model: "WaveRNN", mel: np.ndarray | torch.Tensor, options: VocoderOptions | None = None, **overrides: Any) -> np.ndarray:
    """Synthesizer mel (feat, T) -> float32 waveform of (T - 1) * hop samples at 16 kHz (see ``VocoderOptions``)."""
    opts = resolve_options(options, overrides)
    d = model.dims
    mel_t = check_mel(mel, d.feat_dims)
    if not opts.batched:
        parts = list(stream(model, [mel_t], opts))
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)
    mu_law = _use_mu_law(model, opts)
    _check_postfilter(model, opts)
    runner = make_runner(model, opts)
    wave_len = (mel_t.shape[1] - 1) * d.hop_length
    if wave_len == 0:
        return np.zeros(0, np.float32)
    padded = F.pad(mel_t, (d.pad, d.pad)).unsqueeze(0)  # (1, feat, T + 2 pad)
    cond = model.conditioning(padded)[0, :wave_len]  # (wave_len, cond)
    folded = fold_with_overlap(cond, opts.target, opts.overlap)  # (n, L, cond)
    uniforms = torch.rand(folded.shape[0], folded.shape[1], 2, generator=torch.Generator().manual_seed(opts.seed))
    samples, _ = runner(folded, uniforms, None)  # (n, L)
    y = xfade_and_unfold(_decode(samples, d.bits, mu_law), opts.overlap, "power")[:wave_len]
    if getattr(d, "lpc_order", 0):
        y = lpc.synthesize(y, mel_t.numpy(), d.lpc_order, d.hop_length)
    if opts.postfilter:
        y = postfilter(y, mel_t.numpy(), opts.postfilter_max_gain)
    if opts.de_emphasis:
        y = audio.de_emphasis(y)
    _fade_tail(y, min(int(round(opts.fade_out * d.sample_rate)), wave_len))
    return y.astype(np.float32)


# ---- Griffin-Lim baseline -----------------------------------------------------------------------
class GriffinLimVocoder:
    """The no-weights baseline behind the WaveRNN interface (``audio.griffin_lim``).

    ``generate`` runs Griffin-Lim on the whole mel. ``stream`` runs it on segments as the mel
    arrives (:mod:`rtclone.griffin_lim`, cut by ``segments``), so audio starts after the first
    ``segments.first + segments.right`` frames; ``segments=None`` collects the whole mel and
    yields once (the output of ``generate``).
    Options used: ``seed`` (initial phase) and ``fade_out``; the others do not apply.
    ``power`` sharpens the linear magnitude before phase recovery (``audio.GRIFFIN_LIM_POWER``);
    ``formants`` sharpens each frame's mel envelope first (``audio.formant_lifter``,
    ``audio.GRIFFIN_LIM_FORMANTS``). ``inverter`` (a :class:`rtclone.mel_inverter.MelInverter`, or
    None) replaces the filterbank's pseudo-inverse with learned magnitudes (``formants`` must then be 0; a
    model folder's ``inverter.pt`` sets it); streams then hold back its look-ahead, except before the first
    segment (``griffin_lim.stream_segments``).
    A waveform peaking above ``peak`` (loud mels, or sharpening, which raises loud frames) is
    scaled down to it, since the pipeline clips PCM to [-1, 1] and clipped speech is harder to
    understand (pocketsphinx WER of Griffin-Lim at power 1.5 on the corpus's ground-truth mels:
    0.173 clipped, 0.087 unclipped; some peaked at 1.75).
    """

    peak = 0.97

    def __init__(self, n_iter: int = 32, feat_dims: int = 80, hop_length: int = audio.SYN_HOP,
                 power: float = audio.GRIFFIN_LIM_POWER, segments: "SegmentPlan | None" = SegmentPlan(),
                 formants: float = audio.GRIFFIN_LIM_FORMANTS, inverter: "MelInverter | None" = None) -> None:  # fmt: skip
        if isinstance(power, bool) or not (isinstance(power, (int, float)) and 0.5 <= power <= 3.0):
            raise OptionsError(f"Griffin-Lim power must be a number in [0.5, 3], got {power!r}")
        if isinstance(formants, bool) or not (isinstance(formants, (int, float)) and 0.0 <= formants <= 1.0):
            raise OptionsError(f"Griffin-Lim formant enhancement must be a number in [0, 1], got {formants!r}")
        if segments is not None and not isinstance(segments, SegmentPlan):
            raise OptionsError(f"segments must be a SegmentPlan or None, got {type(segments).__name__}")
        if inverter is not None and formants:
            raise OptionsError("formant enhancement acts on the pseudo-inverse's magnitudes, not on a learned inverter's: "
                               "use one or the other (rtclone eval clone --griffin-lim-inverter off)")
        self.n_iter, self.feat_dims, self.hop_length, self.power = n_iter, feat_dims, hop_length, float(power)
        self.segments, self.formants, self.inverter = segments, float(formants), inverter
        self.sample_rate = audio.SAMPLE_RATE

    def generate(self, mel: np.ndarray | torch.Tensor, options: VocoderOptions | None = None, **overrides: Any) -> np.ndarray:
        """Synthesizer mel (feat, T) -> float32 waveform of (T - 1) * hop samples."""
        opts = resolve_options(options, overrides)
        mel_t = check_mel(mel, self.feat_dims)
        wave_len = (mel_t.shape[1] - 1) * self.hop_length
        y = audio.griffin_lim(mel_t.numpy(), n_iter=self.n_iter, power=self.power, seed=opts.seed % 2**32,
                              formants=self.formants, inverter=self.inverter)[:wave_len].astype(np.float64)
        top = float(np.abs(y).max()) if y.size else 0.0
        if top > self.peak:
            y *= self.peak / top
        _fade_tail(y, min(int(round(opts.fade_out * self.sample_rate)), wave_len))
        return y.astype(np.float32)

    def stream(
        self, mel_chunks: Iterable[np.ndarray | torch.Tensor], options: VocoderOptions | None = None, **overrides: Any
    ) -> Iterator[np.ndarray]:
        """Yield float32 PCM as segments of the mel chunks complete (once, at the end, with ``segments=None``)."""
        opts = resolve_options(options, overrides)
        if self.segments is not None:
            pieces = stream_segments((check_mel(c, self.feat_dims, allow_empty=True).numpy() for c in mel_chunks),
                                     n_iter=self.n_iter, power=self.power, seed=opts.seed % 2**32, plan=self.segments,
                                     formants=self.formants, inverter=self.inverter)  # fmt: skip
            de_emph = _DeEmphasis()
            pcm = self._limit_peak(de_emph(p.astype(np.float64)) for p in pieces)
            return _hold_back(pcm, int(round(opts.fade_out * self.sample_rate)))

        def run() -> Iterator[np.ndarray]:
            chunks = [check_mel(c, self.feat_dims, allow_empty=True) for c in mel_chunks]
            mel = torch.cat(chunks, 1) if chunks else torch.zeros(self.feat_dims, 0)
            yield self.generate(mel, opts)

        return run()

    def _limit_peak(self, pieces: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """A streamed stand-in for ``generate``'s whole-waveform scaling: the gain only falls, to keep
        each piece within ``peak``, ramping over its first 10 ms (a sample there may pass ``peak``)."""
        gain = 1.0
        for y in pieces:
            top = float(np.abs(y).max()) if y.size else 0.0
            if top * gain > self.peak:
                new_gain = self.peak / top
                ramp = min(len(y), int(0.01 * self.sample_rate))
                y[:ramp] *= np.linspace(gain, new_gain, ramp, endpoint=False)
                y[ramp:] *= new_gain
                gain = new_gain
            elif gain != 1.0:
                y *= gain
            yield y
