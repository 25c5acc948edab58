"""WaveRNN vocoder (RTVC / "fatchord" layout): model, conditioning and the torch reference sample loop.

Parameter and buffer names are RTVC's, so an RTVC ``vocoder.pt`` state dict (148 tensors) loads
strictly. The sample loop follows the shared WaveRNN sample-loop spec step for step; the
native and Triton kernels must match it. Generation (unbatched, batched fold/crossfade, streaming)
and the Griffin-Lim baseline live in :mod:`rtclone.vocoder_gen`; :meth:`WaveRNN.generate` and
:meth:`WaveRNN.stream` delegate there.

Mels handed to the vocoder are synthesizer mels in [-4, 4]; like RTVC, the network sees them
divided by ``MEL_SCALE`` (range [-1, 1]).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .audio import MAX_ABS_VALUE
from .errors import InputShapeError, OptionsError

if TYPE_CHECKING:
    from .vocoder_gen import VocoderOptions

MEL_SCALE = MAX_ABS_VALUE  # RTVC feeds synthesizer mels / 4 (range [-1, 1]) to the vocoder
MOL_CLASSES = 30  # 10 logistics x (logit, mean, log scale)
MOL_BITS = 16  # MoL targets are 16-bit linear (RTVC)


@dataclass(frozen=True)
class VocoderDims:
    """Architecture of a WaveRNN (RTVC defaults); saved inside checkpoints."""

    bits: int = 9  # RAW: 2**bits output classes
    mode: str = "RAW"  # "RAW" (softmax over labels) | "MOL" (mixture of 10 logistics)
    rnn_dims: int = 512  # GRU width R
    fc_dims: int = 512  # FC width F
    feat_dims: int = 80  # mel channels
    compute_dims: int = 128  # mel resnet width
    res_out_dims: int = 128  # aux features (split in 4 slices)
    res_blocks: int = 10  # mel resnet blocks
    upsample_factors: tuple[int, ...] = (5, 5, 8)  # product == hop_length
    pad: int = 2  # mel frames of context on each side (conv_in kernel = 2 * pad + 1)
    hop_length: int = 200  # samples per mel frame
    sample_rate: int = 16000
    mu_law: bool = True  # RAW targets are mu-law labels (else linear labels); unused for MOL
    # > 0: the network models the excitation of an order-lpc_order predictor taken from the mel
    # (rtclone.lpc; generation runs it through 1 / A(z)); 0: the waveform itself (RTVC)
    lpc_order: int = 0

    def __post_init__(self) -> None:
        if self.mode not in ("RAW", "MOL"):
            raise OptionsError(f"mode must be 'RAW' or 'MOL', got {self.mode!r}")
        if math.prod(self.upsample_factors) != self.hop_length:
            raise OptionsError(f"upsample factors {self.upsample_factors} do not multiply to hop {self.hop_length}")
        if self.res_out_dims % 4 or self.pad < 0 or not 1 <= self.bits <= 16:
            raise OptionsError(f"bad vocoder dims {self}")
        if not isinstance(self.lpc_order, int) or not 0 <= self.lpc_order <= 32:
            raise OptionsError(f"lpc_order must be an integer in [0, 32], got {self.lpc_order!r}")
        if self.lpc_order and (self.feat_dims != 80 or self.hop_length != 200):
            raise OptionsError("an LPC vocoder works on 80-channel synthesizer mels at hop 200")

    @property
    def n_classes(self) -> int:
        """Width of the output layer fc3."""
        return 2**self.bits if self.mode == "RAW" else MOL_CLASSES

    @property
    def aux_dims(self) -> int:
        return self.res_out_dims // 4

    @property
    def cond_dims(self) -> int:
        """Per-sample conditioning width: mel (feat) + 4 aux slices (= 208 for RTVC)."""
        return self.feat_dims + self.res_out_dims

    @classmethod
    def from_rtvc_state_dict(cls, sd: dict[str, torch.Tensor]) -> "VocoderDims":
        """Read the dims off the tensor shapes of an RTVC (or our) vocoder state dict."""
        conv_in = sd["upsample.resnet.conv_in.weight"]  # (compute, feat, 2 * pad + 1)
        res_blocks = 0
        while f"upsample.resnet.layers.{res_blocks}.conv1.weight" in sd:
            res_blocks += 1
        ups = sorted(
            (int(k.split(".")[2]), int(v.shape[-1]))
            for k, v in sd.items()
            if k.startswith("upsample.up_layers.") and k.endswith(".weight")
        )
        factors = tuple((ksize - 1) // 2 for _, ksize in ups)
        n_out = int(sd["fc3.weight"].shape[0])
        if n_out == MOL_CLASSES:
            mode, bits = "MOL", MOL_BITS
        elif n_out & (n_out - 1) == 0:
            mode, bits = "RAW", n_out.bit_length() - 1
        else:
            raise ValueError(f"fc3 has {n_out} outputs: neither 2**bits (RAW) nor {MOL_CLASSES} (MOL)")
        try:
            return cls(
                bits=bits,
                mode=mode,
                rnn_dims=int(sd["rnn1.weight_hh_l0"].shape[1]),
                fc_dims=int(sd["fc1.weight"].shape[0]),
                feat_dims=int(conv_in.shape[1]),
                compute_dims=int(conv_in.shape[0]),
                res_out_dims=int(sd["upsample.resnet.conv_out.weight"].shape[0]),
                res_blocks=res_blocks,
                upsample_factors=factors,
                pad=(int(conv_in.shape[2]) - 1) // 2,
                hop_length=math.prod(factors),
                mu_law=mode == "RAW",
            )
        except OptionsError as exc:  # checkpoints turn ValueError into CheckpointError
            raise ValueError(str(exc)) from exc


# ---- upsample network ---------------------------------------------------------------------------
class ResBlock(nn.Module):
    """1x1 conv -> BN -> ReLU -> 1x1 conv -> BN, plus the input."""

    def __init__(self, dims: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(dims, dims, kernel_size=1, bias=False)
        self.conv2 = nn.Conv1d(dims, dims, kernel_size=1, bias=False)
        self.batch_norm1 = nn.BatchNorm1d(dims)
        self.batch_norm2 = nn.BatchNorm1d(dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T)
        y = F.relu(self.batch_norm1(self.conv1(x)))
        return x + self.batch_norm2(self.conv2(y))


class MelResNet(nn.Module):
    """Valid conv over 2 * pad + 1 frames, then residual 1x1 blocks: (B, feat, T + 2 pad) -> (B, res_out, T)."""

    def __init__(self, res_blocks: int, in_dims: int, compute_dims: int, res_out_dims: int, pad: int) -> None:
        super().__init__()
        self.conv_in = nn.Conv1d(in_dims, compute_dims, kernel_size=2 * pad + 1, bias=False)
        self.batch_norm = nn.BatchNorm1d(compute_dims)
        self.layers = nn.ModuleList([ResBlock(compute_dims) for _ in range(res_blocks)])
        self.conv_out = nn.Conv1d(compute_dims, res_out_dims, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.batch_norm(self.conv_in(x)))
        for layer in self.layers:
            x = layer(x)
        return self.conv_out(x)


class Stretch2d(nn.Module):
    """Repeat each element ``scale`` times along the last axis (nearest-neighbour upsampling)."""

    def __init__(self, scale: int) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, H, W * scale)
        return x.repeat_interleave(self.scale, dim=-1)


def _smooth(conv: nn.Conv2d, x: torch.Tensor, rows: int) -> torch.Tensor:
    """``conv(x)`` for the upsample network's one-channel (1, k) convs over x (B, 1, rows, L), computed
    as a depthwise conv1d over the rows sharing the kernel: the same sums, but mkldnn's one-channel
    2-D conv took ~5x as long (mostly its backward: 85 vs 420 ms for the widest, one training step).
    ``rows`` is a constant (not read from x) so that exports see a fixed kernel shape."""
    k = conv.kernel_size[-1]
    w = conv.weight.view(1, 1, k).expand(rows, 1, k)
    return F.conv1d(x.squeeze(1), w, padding=conv.padding[-1], groups=rows).unsqueeze(1)


class UpsampleNetwork(nn.Module):
    """Mel frames -> per-sample conditioning: stretched/smoothed mels and mel-resnet aux features.

    Input (B, feat, T + 2 pad) (``pad`` frames of context each side); output mels (B, T * hop, feat)
    and aux (B, T * hop, res_out).
    """

    def __init__(self, dims: VocoderDims) -> None:
        super().__init__()
        self.hop, self.feat = dims.hop_length, dims.feat_dims
        self.indent = dims.pad * dims.hop_length
        self.resnet = MelResNet(dims.res_blocks, dims.feat_dims, dims.compute_dims, dims.res_out_dims, dims.pad)
        self.resnet_stretch = Stretch2d(dims.hop_length)
        layers: list[nn.Module] = []
        for scale in dims.upsample_factors:
            conv = nn.Conv2d(1, 1, kernel_size=(1, 2 * scale + 1), padding=(0, scale), bias=False)
            nn.init.constant_(conv.weight, 1.0 / (2 * scale + 1))
            layers += [Stretch2d(scale), conv]
        self.up_layers = nn.ModuleList(layers)  # parameters at indices 1, 3, 5 (RTVC names)

    def forward(self, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        aux = self.resnet_stretch(self.resnet(m).unsqueeze(1)).squeeze(1)  # (B, res_out, T * hop)
        x = m.unsqueeze(1)  # (B, 1, feat, T + 2 pad)
        for layer in self.up_layers:
            x = _smooth(layer, x, self.feat) if isinstance(layer, nn.Conv2d) else layer(x)
        x = x.squeeze(1)[:, :, self.indent : x.shape[-1] - self.indent]  # (B, feat, T * hop)
        return x.transpose(1, 2), aux.transpose(1, 2)


def _back_interval(layer: nn.Module, lo: int, hi: int) -> tuple[int, int]:
    """Input index interval that output indices [lo, hi] (last axis) depend on, for one layer."""
    if isinstance(layer, Stretch2d):
        return lo // layer.scale, hi // layer.scale
    if isinstance(layer, (nn.Conv1d, nn.Conv2d)):
        k, p, s, d = layer.kernel_size[-1], layer.padding[-1], layer.stride[-1], layer.dilation[-1]
        return lo * s - p, hi * s - p + d * (k - 1)
    raise TypeError(f"no receptive-field rule for {type(layer).__name__}")


def upsample_context(net: UpsampleNetwork) -> tuple[int, int]:
    """(frames before, frames after) of mel context one output frame's samples depend on.

    Derived by walking the layers backwards (stretch: i -> i // s; conv: [i - p, i - p + d (k-1)]),
    for the mel path and the resnet path; frames are the caller's (unpadded) frame indices.
    """
    hop, j = net.hop, 64  # any frame far from the edges: the map is hop-periodic
    lo, hi = j * hop + net.indent, j * hop + hop - 1 + net.indent  # in the padded sample axis
    for layer in reversed(net.up_layers):
        lo, hi = _back_interval(layer, lo, hi)
    mel_lo, mel_hi = lo, hi  # padded frame indices
    lo, hi = _back_interval(net.resnet_stretch, j * hop, j * hop + hop - 1)  # resnet output frames
    convs = [m for m in net.resnet.modules() if isinstance(m, nn.Conv1d)]
    for conv in reversed(convs):  # residual skips never widen the interval
        lo, hi = _back_interval(conv, lo, hi)
    pad = net.indent // hop
    first, last = min(mel_lo, lo) - pad, max(mel_hi, hi) - pad
    return j - first, last - j


# ---- the model -------------------------------------------------------------------------------
def _gru_pass(layer: nn.GRU, x: torch.Tensor) -> torch.Tensor:
    """``layer(x)[0]`` from a zero state; on the CPU by rtclone.kernels.cpu.gru when it is built (the
    same function, a cheaper training step: benchmarks/train_vocoder.py)."""
    from .kernels.cpu import gru as fused

    usable = x.device.type == "cpu" and x.dtype in (torch.float32, torch.bfloat16) and layer.weight_hh_l0.dtype == torch.float32
    if usable and fused.available():
        return fused.gru_layer(x, layer.weight_ih_l0, layer.weight_hh_l0, layer.bias_ih_l0, layer.bias_hh_l0)
    return layer(x)[0]


class WaveRNN(nn.Module):
    """RTVC's WaveRNN: upsample network, I, GRU1, GRU2, FC1-FC3 (RAW or MoL output)."""

    def __init__(self, dims: VocoderDims = VocoderDims()) -> None:
        super().__init__()
        self.dims = dims
        r, f, a = dims.rnn_dims, dims.fc_dims, dims.aux_dims
        self.register_buffer("step", torch.zeros(1, dtype=torch.long))  # training steps (RTVC name)
        self.upsample = UpsampleNetwork(dims)
        self.I = nn.Linear(dims.feat_dims + a + 1, r)
        self.rnn1 = nn.GRU(r, r, batch_first=True)
        self.rnn2 = nn.GRU(r + a, r, batch_first=True)
        self.fc1 = nn.Linear(r + a, f)
        self.fc2 = nn.Linear(f + a, f)
        self.fc3 = nn.Linear(f, dims.n_classes)
        before, after = upsample_context(self.upsample)
        if before > dims.pad or after > dims.pad:
            raise OptionsError(f"upsample receptive field ({before}, {after}) frames exceeds pad {dims.pad}")
        self.lookahead = after  # mel frames needed after a frame before its samples can be made

    def _split(self, cond: torch.Tensor) -> tuple[torch.Tensor, ...]:
        fd, a = self.dims.feat_dims, self.dims.aux_dims
        return (cond[..., :fd],) + tuple(cond[..., fd + i * a : fd + (i + 1) * a] for i in range(4))

    def forward(self, x: torch.Tensor, mels: torch.Tensor) -> torch.Tensor:
        """Teacher-forced training pass.

        x: (B, S) previous samples in the model-input domain ([-1, 1]); mels: (B, feat, S / hop + 2 pad)
        synthesizer mels with ``pad`` frames of context each side. Returns (B, S, n_classes) logits
        (RAW) or mixture parameters (MOL).
        """
        m, aux = self.upsample(mels / MEL_SCALE)  # (B, S, feat), (B, S, res_out)
        if m.shape[1] != x.shape[1]:
            raise InputShapeError(f"x has {x.shape[1]} samples, mels give {m.shape[1]}")
        _, a1, a2, a3, a4 = self._split(torch.cat([m, aux], -1))
        i = self.I(torch.cat([x.unsqueeze(-1), m, a1], -1))  # (B, S, R)
        x1 = i + _gru_pass(self.rnn1, i)
        x2 = x1 + _gru_pass(self.rnn2, torch.cat([x1, a2], -1))
        f1 = F.relu(self.fc1(torch.cat([x2, a3], -1)))
        f2 = F.relu(self.fc2(torch.cat([f1, a4], -1)))
        return self.fc3(f2)

    @torch.no_grad()
    def conditioning(self, window: torch.Tensor) -> torch.Tensor:
        """Per-sample conditioning of a block: window (B, feat, n + 2 pad) synthesizer mels -> (B, n * hop, cond)."""
        m, aux = self.upsample(window / MEL_SCALE)
        return torch.cat([m, aux], -1).float()  # (B, n * hop, feat + res_out)

    @torch.inference_mode()
    def sample_loop(
        self,
        cond: torch.Tensor,
        uniforms: torch.Tensor,
        state: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """The torch reference of the shared sample-loop spec.

        cond (B, T, feat + res_out), uniforms (B, T, 2) -> samples (B, T) (model-input domain), and
        the state (x (B,), h1 (B, R), h2 (B, R)) to continue from. The parts of I, fc1 and fc2 that
        only read the conditioning are computed for all T at once (same maths, other float
        summation order than a fused kernel).
        """
        b, t_len, _ = cond.shape
        r, n, raw = self.dims.rnn_dims, self.dims.n_classes, self.dims.mode == "RAW"
        if state is None:
            x, h1, h2 = torch.zeros(b), torch.zeros(b, r), torch.zeros(b, r)
        else:
            x, h1, h2 = (s.detach().float().clone() for s in state)
        m, a1, a2, a3, a4 = self._split(cond.float())
        wi = self.I.weight
        pre_i = F.linear(torch.cat([m, a1], -1), wi[:, 1:], self.I.bias)  # (B, T, R): I without x
        wx = wi[:, 0]  # (R,) the weight of the previous sample
        w1, w2 = self.fc1.weight, self.fc2.weight
        pre_f1 = F.linear(a3, w1[:, r:], self.fc1.bias)  # (B, T, F)
        pre_f2 = F.linear(a4, w2[:, self.dims.fc_dims :], self.fc2.bias)
        w1t, w2t = w1[:, :r].t(), w2[:, : self.dims.fc_dims].t()
        w3, b3 = self.fc3.weight, self.fc3.bias
        g1 = (self.rnn1.weight_ih_l0, self.rnn1.weight_hh_l0, self.rnn1.bias_ih_l0, self.rnn1.bias_hh_l0)
        g2 = (self.rnn2.weight_ih_l0, self.rnn2.weight_hh_l0, self.rnn2.bias_ih_l0, self.rnn2.bias_hh_l0)
        levels = 2.0 * torch.arange(n, dtype=torch.float32) / (n - 1) - 1.0  # label -> 2 label / (n - 1) - 1
        outs = []
        steps = zip(pre_i.unbind(1), a2.unbind(1), pre_f1.unbind(1), pre_f2.unbind(1), uniforms.float().unbind(1))
        for pi, a2_t, pf1, pf2, u in steps:
            i = torch.addcmul(pi, x.unsqueeze(1), wx)  # I @ [x, m_t, a1_t] + b  (B, R)
            h1 = torch.gru_cell(i, h1, *g1)  # == gru_cell(...) below (PyTorch gate order r, z, n)
            x1 = i + h1
            h2 = torch.gru_cell(torch.cat([x1, a2_t], 1), h2, *g2)
            x2 = x1 + h2
            f1 = torch.relu(torch.addmm(pf1, x2, w1t))  # fc1 @ [x2, a3_t] + b
            f2 = torch.relu(torch.addmm(pf2, f1, w2t))  # fc2 @ [f1, a4_t] + b
            out = F.linear(f2, w3, b3)  # (B, n_classes)
            x = sample_raw(out, u[:, 0], levels) if raw else sample_mol(out, u)
            outs.append(x)
        out_samples = torch.stack(outs, 1) if outs else torch.zeros(b, 0)  # (B, T)
        return out_samples, (x, h1, h2)

    # ---- generation (see rtclone.vocoder_gen) ----
    def generate(self, mel: np.ndarray | torch.Tensor, options: "VocoderOptions | None" = None, **overrides: Any) -> np.ndarray:
        """Synthesizer mel (feat, T) -> float32 waveform of (T - 1) * hop samples at 16 kHz.

        ``options`` (a :class:`~rtclone.vocoder_gen.VocoderOptions`) with keyword overrides, e.g.
        ``generate(mel, backend="torch", batched=True)``.
        """
        from .vocoder_gen import generate

        return generate(self, mel, options, **overrides)

    def stream(
        self, mel_chunks: Iterable[np.ndarray | torch.Tensor], options: "VocoderOptions | None" = None, **overrides: Any
    ) -> Iterator[np.ndarray]:
        """Yield float32 PCM chunks as mel chunks (feat, t) arrive; concatenated == unbatched ``generate``."""
        from .vocoder_gen import stream

        return stream(self, mel_chunks, options, **overrides)


def gru_cell(
    x: torch.Tensor, h: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor, b_ih: torch.Tensor, b_hh: torch.Tensor
) -> torch.Tensor:
    """One PyTorch-convention GRU step (gate order r, z, n): x (B, in), h (B, R) -> (B, R)."""
    gi = F.linear(x, w_ih, b_ih)  # (B, 3R)
    gh = F.linear(h, w_hh, b_hh)
    i_r, i_z, i_n = gi.chunk(3, 1)
    h_r, h_z, h_n = gh.chunk(3, 1)
    r = torch.sigmoid(i_r + h_r)
    z = torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)
    return (1 - z) * n + z * h


def sample_raw(logits: torch.Tensor, u: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF categorical sample: logits (B, n), u (B,) in [0, 1) -> levels[label] (B,).

    label = #{k : cumsum(softmax)_k <= u * cumsum_n}, clamped to n - 1; ``levels[k]`` is the
    model-input value of label k (2 k / (n - 1) - 1 for the spec).
    """
    return levels[inverse_cdf_label(logits, u)]


def inverse_cdf_label(logits: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """label = #{k : cumsum(softmax(logits))_k <= u * cumsum_n}, clamped to n - 1: logits (B, n), u (B,) -> (B,)."""
    c = torch.cumsum(torch.softmax(logits.float(), -1), -1)  # (B, n) float32
    label = torch.searchsorted(c, u.float().unsqueeze(1) * c[:, -1:], right=True).clamp_(max=c.shape[1] - 1)
    return label[:, 0]


def sample_mol(params: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Mixture-of-logistics sample: params (B, 30), u (B, 2) -> x in [-1, 1] (B,).

    The component k is the inverse-CDF choice on softmax(logit_probs) at u[:, 0] (the RAW rule);
    x is the logistic draw of component k at u[:, 1].
    """
    nmix = MOL_CLASSES // 3
    logit_probs, means, log_scales = params[:, :nmix], params[:, nmix : 2 * nmix], params[:, 2 * nmix :]
    k = inverse_cdf_label(logit_probs, u[:, 0]).unsqueeze(1)  # (B, 1)
    s = torch.clamp(log_scales.gather(1, k), min=-7.0).squeeze(1)
    u2 = u[:, 1].clamp(1e-5, 1.0 - 1e-5)
    return torch.clamp(means.gather(1, k).squeeze(1) + torch.exp(s) * (torch.log(u2) - torch.log(1.0 - u2)), -1.0, 1.0)
