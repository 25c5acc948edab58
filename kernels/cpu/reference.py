"""Plain-torch reference of the WaveRNN sample loop (the spec the native kernel must match).

Every step follows /work/notes/wavernn_spec.md literally: concatenations, full matrices, PyTorch's
GRU gate order (r, z, n), softmax + inverse-CDF (RAW) or mixture-of-logistics (MoL) sampling with
pre-drawn uniforms. It can run in float64 (to explain label flips of float32 backends) and can be
"teacher forced" with a given input sequence so that two backends are compared step by step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from rtclone.errors import CheckpointError, InputShapeError, OptionsError
from rtclone.sparse import PRUNABLE

MATRIX_KEYS = PRUNABLE  # the loop's matrices (RTVC names), defined once in rtclone.sparse
BIAS_KEYS = tuple(k.replace("weight", "bias") for k in MATRIX_KEYS)  # same order: I.bias, rnn1.bias_ih_l0, ...
MOL_OUTPUTS = 30  # 10 logit probs, 10 means, 10 log scales


@dataclass(frozen=True)
class LoopDims:
    """Sizes of the sample loop, read off a state dict."""

    rnn_dims: int  # R
    fc_dims: int  # F
    feat_dims: int  # mel channels in the conditioning (80)
    aux_dims: int  # width of each of the 4 aux slices (32)
    n_out: int  # 2**bits (RAW) or 30 (MoL)
    mol: bool  # True for mixture-of-logistics sampling

    @property
    def cond_dims(self) -> int:
        """Width of ``cond[b, t]``: ``[m (feat) | a1 | a2 | a3 | a4]``."""
        return self.feat_dims + 4 * self.aux_dims


State = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # x (B,), h1 (B, R), h2 (B, R)


def loop_shapes(rnn_dims: int, fc_dims: int, feat_dims: int, aux_dims: int, n_out: int) -> dict[str, tuple[int, ...]]:
    """Shape of every loop tensor (MATRIX_KEYS, then BIAS_KEYS) for the given sizes."""
    R, Fd, feat, aux = rnn_dims, fc_dims, feat_dims, aux_dims
    weights = {
        "I.weight": (R, 1 + feat + aux),
        "rnn1.weight_ih_l0": (3 * R, R),
        "rnn1.weight_hh_l0": (3 * R, R),
        "rnn2.weight_ih_l0": (3 * R, R + aux),
        "rnn2.weight_hh_l0": (3 * R, R),
        "fc1.weight": (Fd, R + aux),
        "fc2.weight": (Fd, Fd + aux),
        "fc3.weight": (n_out, Fd),
    }
    biases = {b: (weights[w][0],) for w, b in zip(MATRIX_KEYS, BIAS_KEYS)}
    return {**weights, **biases}


def loop_dims(state_dict: dict[str, torch.Tensor], mode: str = "RAW", bits: int = 9) -> LoopDims:
    """Validate the loop's tensors in an RTVC-keyed state dict and return its sizes."""
    mode_u = mode.upper()
    if mode_u not in ("RAW", "MOL"):
        raise OptionsError(f"mode must be 'RAW' or 'MOL', got {mode!r}")
    if mode_u == "RAW" and not 1 <= bits <= 16:
        raise OptionsError(f"bits must be in 1..16, got {bits}")
    missing = [k for k in MATRIX_KEYS + BIAS_KEYS if k not in state_dict]
    if missing:
        raise CheckpointError(f"WaveRNN state dict lacks {missing}")
    R = state_dict["rnn1.weight_hh_l0"].shape[1]
    Fd = state_dict["fc1.weight"].shape[0]
    aux = state_dict["rnn2.weight_ih_l0"].shape[1] - R
    feat = state_dict["I.weight"].shape[1] - 1 - aux
    n_out = MOL_OUTPUTS if mode_u == "MOL" else 2**bits
    expected = loop_shapes(R, Fd, feat, aux, n_out)
    for key, shape in expected.items():
        if tuple(state_dict[key].shape) != shape:
            raise CheckpointError(f"{key} has shape {tuple(state_dict[key].shape)}, expected {shape} (mode {mode_u})")
    if aux < 0 or feat < 0:
        raise CheckpointError("inconsistent I / rnn2 input widths")
    return LoopDims(R, Fd, feat, aux, n_out, mode_u == "MOL")


def loop_backend_dims(
    state_dict: dict[str, torch.Tensor],
    mode: str,
    bits: int,
    value_dtype: torch.dtype,
    threads: int,
    block: tuple[int, int] | None = None,
) -> LoopDims:
    """Validate the constructor arguments shared by the loop backends (NativeWaveRNN,
    TritonWaveRNN): weight dtype float32/float16, ``threads`` >= 1, ``block`` (if given) two
    positive sizes; then the state dict (:func:`loop_dims`). Raises OptionsError / CheckpointError."""
    if value_dtype not in (torch.float32, torch.float16):
        raise OptionsError(f"value_dtype must be float32 or float16, got {value_dtype}")
    if block is not None and (len(block) != 2 or min(block) < 1):
        raise OptionsError(f"block must be (bh, bw) with positive sizes, got {block}")
    if threads < 1:
        raise OptionsError(f"threads must be >= 1, got {threads}")
    return loop_dims(state_dict, mode, bits)


def check_inputs(dims: LoopDims, cond: torch.Tensor, uniforms: torch.Tensor, state: State | None) -> None:
    """Raise InputShapeError unless cond (B, T, cond_dims), uniforms (B, T, 2) and state fit."""
    if cond.dim() != 3 or cond.shape[2] != dims.cond_dims:
        raise InputShapeError(f"cond must be (B, T, {dims.cond_dims}), got {tuple(cond.shape)}")
    if uniforms.dim() != 3 or tuple(uniforms.shape) != (cond.shape[0], cond.shape[1], 2):
        raise InputShapeError(f"uniforms must be (B, T, 2) = {(cond.shape[0], cond.shape[1], 2)}, got {tuple(uniforms.shape)}")
    if not cond.is_floating_point() or not uniforms.is_floating_point():
        raise InputShapeError("cond and uniforms must be floating point")
    if not bool(torch.isfinite(cond).all()):
        raise InputShapeError("cond has NaN or infinite values")
    if not bool(((uniforms >= 0) & (uniforms <= 1)).all()):
        raise InputShapeError("uniforms must lie in [0, 1] (and not be NaN)")
    if state is not None:
        B, R = cond.shape[0], dims.rnn_dims
        if len(state) != 3:
            raise InputShapeError("state must be (x, h1, h2)")
        x, h1, h2 = state
        if tuple(x.shape) != (B,) or tuple(h1.shape) != (B, R) or tuple(h2.shape) != (B, R):
            raise InputShapeError(
                f"state shapes {tuple(x.shape)}, {tuple(h1.shape)}, {tuple(h2.shape)} do not match B={B}, R={R}"
            )
        if not all(bool(torch.isfinite(s).all()) for s in state):
            raise InputShapeError("state has NaN or infinite values")


def _gru_gates(gi: torch.Tensor, gh: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """PyTorch GRUCell update from gi = W_ih x + b_ih (B, 3R), gh = W_hh h + b_hh (B, 3R)."""
    i_r, i_z, i_n = gi.chunk(3, dim=1)
    h_r, h_z, h_n = gh.chunk(3, dim=1)
    r = torch.sigmoid(i_r + h_r)
    z = torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)
    return (1 - z) * n + z * h


def _gru(inp: torch.Tensor, h: torch.Tensor, w_ih, w_hh, b_ih, b_hh) -> torch.Tensor:
    return _gru_gates(F.linear(inp, w_ih, b_ih), F.linear(h, w_hh, b_hh), h)


def sample_raw(out: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF categorical sample of softmax(out) (B, n) at u[:, 0] (u: (B, 2)) → x in [-1, 1] (B,)."""
    n = out.shape[-1]
    label = _inverse_cdf(out, u[:, 0])
    return 2.0 * label.to(out.dtype) / (n - 1) - 1.0


def _inverse_cdf(out: torch.Tensor, u0: torch.Tensor) -> torch.Tensor:
    """#{k : cumsum(softmax(out))_k <= u0 * total}, clamped to n - 1: out (B, n), u0 (B,) → labels (B,)."""
    c = torch.cumsum(torch.softmax(out, dim=-1), dim=-1)  # (B, n)
    return (c <= u0[:, None].to(c.dtype) * c[:, -1:]).sum(dim=-1).clamp(max=out.shape[-1] - 1)


def sample_mol(out: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Mixture-of-logistics sample (B, 30) → (B,): component k by inverse CDF of softmax(logit_probs)
    at u[:, 0] (the RAW rule), then the logistic draw of component k at u[:, 1]."""
    logit_probs, means, log_scales = out[:, :10], out[:, 10:20], out[:, 20:30]
    k = _inverse_cdf(logit_probs, u[:, 0])[:, None]  # (B, 1)
    s = torch.clamp(log_scales.gather(1, k)[:, 0], min=-7.0)
    u2 = u[:, 1].to(out.dtype).clamp(1e-5, 1 - 1e-5)
    x = means.gather(1, k)[:, 0] + torch.exp(s) * (torch.log(u2) - torch.log(1 - u2))
    return x.clamp(-1.0, 1.0)


def reference_generate(
    state_dict: dict[str, torch.Tensor],
    cond: torch.Tensor,
    uniforms: torch.Tensor,
    mode: str = "RAW",
    bits: int = 9,
    state: State | None = None,
    *,
    dtype: torch.dtype = torch.float32,
    forced_x: torch.Tensor | None = None,
) -> tuple[torch.Tensor, State]:
    """Run the sample loop in plain torch.

    cond (B, T, feat + 4 aux), uniforms (B, T, 2) → samples (B, T), state (x (B,), h1 (B, R), h2 (B, R)),
    all in ``dtype``. ``forced_x`` (B, T), if given, replaces each step's sample as the next
    input (teacher forcing), so a backend's own samples can be replayed step by step.
    """
    dims = loop_dims(state_dict, mode, bits)
    check_inputs(dims, cond, uniforms, state)
    B, T, _ = cond.shape
    R, feat, aux = dims.rnn_dims, dims.feat_dims, dims.aux_dims
    w = {k: state_dict[k].detach().to(dtype) for k in MATRIX_KEYS + BIAS_KEYS}
    if state is None:
        x = torch.zeros(B, dtype=dtype)
        h1 = torch.zeros(B, R, dtype=dtype)
        h2 = torch.zeros(B, R, dtype=dtype)
    else:
        x, h1, h2 = (s.detach().to(dtype) for s in state)
    cond = cond.detach().to(dtype)
    sample = sample_mol if dims.mol else sample_raw
    samples = torch.empty(B, T, dtype=dtype)
    with torch.no_grad():
        for t in range(T):
            c = cond[:, t]  # (B, cond_dims)
            m, a1 = c[:, :feat], c[:, feat : feat + aux]
            a2, a3, a4 = (c[:, feat + k * aux : feat + (k + 1) * aux] for k in (1, 2, 3))
            i = F.linear(torch.cat([x[:, None], m, a1], dim=1), w["I.weight"], w["I.bias"])  # (B, R)
            h1 = _gru(i, h1, w["rnn1.weight_ih_l0"], w["rnn1.weight_hh_l0"], w["rnn1.bias_ih_l0"], w["rnn1.bias_hh_l0"])
            x1 = i + h1
            h2 = _gru(
                torch.cat([x1, a2], dim=1),
                h2,
                w["rnn2.weight_ih_l0"],
                w["rnn2.weight_hh_l0"],
                w["rnn2.bias_ih_l0"],
                w["rnn2.bias_hh_l0"],
            )
            x2 = x1 + h2
            f1 = F.relu(F.linear(torch.cat([x2, a3], dim=1), w["fc1.weight"], w["fc1.bias"]))
            f2 = F.relu(F.linear(torch.cat([f1, a4], dim=1), w["fc2.weight"], w["fc2.bias"]))
            out = F.linear(f2, w["fc3.weight"], w["fc3.bias"])  # (B, n_out)
            samples[:, t] = sample(out, uniforms[:, t])
            x = samples[:, t] if forced_x is None else forced_x[:, t].to(dtype)
    return samples, (x.clone(), h1, h2)


def replay_reference(
    state_dict: dict[str, torch.Tensor],
    cond: torch.Tensor,
    uniforms: torch.Tensor,
    inputs: torch.Tensor,
    mode: str = "RAW",
    bits: int = 9,
    state: State | None = None,
    *,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, State]:
    """The loop teacher-forced with ``inputs`` (B, T) (a backend's own samples), fast.

    Same result as ``reference_generate(..., forced_x=inputs)`` up to summation order, but every
    product that does not depend on the recurrence is computed for all steps at once; only the two
    W_hh products run step by step. Used to check long runs of a backend at RTVC dims.
    """
    dims = loop_dims(state_dict, mode, bits)
    check_inputs(dims, cond, uniforms, state)
    B, T, _ = cond.shape
    if tuple(inputs.shape) != (B, T):
        raise InputShapeError(f"inputs must be (B, T) = {(B, T)}, got {tuple(inputs.shape)}")
    R, feat, aux = dims.rnn_dims, dims.feat_dims, dims.aux_dims
    w = {k: state_dict[k].detach().to(dtype) for k in MATRIX_KEYS + BIAS_KEYS}
    if state is None:
        x0, h1, h2 = torch.zeros(B, dtype=dtype), torch.zeros(B, R, dtype=dtype), torch.zeros(B, R, dtype=dtype)
    else:
        x0, h1, h2 = (s.detach().to(dtype) for s in state)
    c = cond.detach().to(dtype)
    m, a1 = c[..., :feat], c[..., feat : feat + aux]
    a2, a3, a4 = (c[..., feat + k * aux : feat + (k + 1) * aux] for k in (1, 2, 3))
    x_in = torch.cat([x0[:, None], inputs[:, :-1].to(dtype)], dim=1)  # (B, T) input of each step

    def scan(gi: torch.Tensor, h: torch.Tensor, w_hh: torch.Tensor, b_hh: torch.Tensor) -> torch.Tensor:
        hs = torch.empty_like(gi[..., :R])  # (B, T, R)
        for t in range(T):
            h = _gru_gates(gi[:, t], F.linear(h, w_hh, b_hh), h)
            hs[:, t] = h
        return hs

    with torch.no_grad():
        i = F.linear(torch.cat([x_in[..., None], m, a1], dim=-1), w["I.weight"], w["I.bias"])  # (B, T, R)
        h1s = scan(F.linear(i, w["rnn1.weight_ih_l0"], w["rnn1.bias_ih_l0"]), h1, w["rnn1.weight_hh_l0"], w["rnn1.bias_hh_l0"])
        x1 = i + h1s
        gi2 = F.linear(torch.cat([x1, a2], dim=-1), w["rnn2.weight_ih_l0"], w["rnn2.bias_ih_l0"])
        h2s = scan(gi2, h2, w["rnn2.weight_hh_l0"], w["rnn2.bias_hh_l0"])
        x2 = x1 + h2s
        f1 = F.relu(F.linear(torch.cat([x2, a3], dim=-1), w["fc1.weight"], w["fc1.bias"]))
        f2 = F.relu(F.linear(torch.cat([f1, a4], dim=-1), w["fc2.weight"], w["fc2.bias"]))
        out = F.linear(f2, w["fc3.weight"], w["fc3.bias"])  # (B, T, n_out)
        sample = sample_mol if dims.mol else sample_raw
        samples = sample(out.reshape(B * T, -1), uniforms.reshape(B * T, 2)).reshape(B, T)
    return samples, (inputs[:, -1].to(dtype).clone(), h1s[:, -1].clone(), h2s[:, -1].clone())


def draw_uniforms(batch: int, steps: int, seed: int) -> torch.Tensor:
    """The spec's pre-drawn uniforms: ``torch.rand(B, T, 2)`` from a generator seeded with ``seed``."""
    return torch.rand(batch, steps, 2, generator=torch.Generator().manual_seed(seed))


def labels_from_samples(samples: torch.Tensor, bits: int) -> torch.Tensor:
    """RAW samples x = 2 label / (n - 1) - 1 back to integer labels."""
    n = 2**bits
    return torch.round((samples.double() + 1.0) * (n - 1) / 2.0).long()


def fold_count(total: int, target: int = 8000, overlap: int = 800) -> int:
    """Number of folds RTVC's fold_with_overlap makes of ``total`` samples (each target + 2 overlap long)."""
    if total <= target + 2 * overlap:
        return 1
    folds = (total - overlap) // (target + overlap)
    if total - (folds * (overlap + target) + overlap) != 0:
        folds += 1
    return max(1, folds)


__all__ = [
    "LoopDims",
    "State",
    "loop_dims",
    "loop_shapes",
    "loop_backend_dims",
    "check_inputs",
    "reference_generate",
    "replay_reference",
    "sample_raw",
    "sample_mol",
    "draw_uniforms",
    "labels_from_samples",
    "fold_count",
]
