"""Sampling on device: categorical from logits (RAW) and mixture of logistics (MoL), per the spec.

Uniforms come either from the caller (``uniforms`` (B, 2) float32, the spec's pre-drawn numbers,
so every backend sees the same randomness) or from Philox inside the kernel:
``u[b, j] = tl.rand(seed, offset + 2*b + j)``. Nothing is read back to the host, so a sampling
step can be enqueued behind the matmuls with no synchronisation. The same seed and offset give
bit-identical labels on every run; :func:`philox_uniforms` writes the numbers the kernel would draw.

- RAW (``n`` classes): ``p = softmax(logits)``, ``c = cumsum(p)``, label = ``#{k: c[k] <= u0*c[n-1]}``
  clamped to ``n-1``; ``x = 2*label/(n-1) - 1``.
- MoL (30 outputs = 10 logit_probs | 10 means | 10 log_scales): component ``k`` by the RAW
  inverse-CDF rule on ``softmax(logit_probs)`` with ``u0``, then ``x = clamp(mean_k +
  exp(max(ls_k, -7)) * (log(u1) - log(1-u1)), -1, 1)`` with ``u1`` clamped to [1e-5, 1-1e-5];
  label = ``k``. (The spec's first version chose ``k = argmax(logit_probs - log(-log(u0)))`` with
  one Gumbel draw shared by all components, which always picked the argmax component.)

The device helpers :func:`raw_tile`, :func:`mol_tile` and :func:`draw_uniforms` are shared with the
persistent WaveRNN kernel.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from rtclone.errors import InputShapeError, OptionsError

from . import interpreting, require_backend

MODES = ("RAW", "MOL")
N_MIX = 10  # mixture components of the MoL output (30 = 3 x 10)


@triton.jit
def draw_uniforms(seed, counter):
    """Two Philox uniforms in [0, 1) per element of ``counter``: at ``counter`` and ``counter + 1``."""
    return tl.rand(seed, counter), tl.rand(seed, counter + 1)


@triton.jit
def raw_tile(logits, idx, n_cls, u0):
    """Inverse-CDF categorical over ``n_cls`` classes: logits (BLOCK_B, NP), u0 (BLOCK_B,) → int32 labels."""
    ok = idx[None, :] < n_cls
    lg = tl.where(ok, logits, float("-inf"))
    e = tl.exp(lg - tl.max(lg, axis=1)[:, None])  # masked classes give exp(-inf) = 0
    p = e / tl.sum(e, axis=1)[:, None]
    c = tl.cumsum(p, axis=1)
    total = tl.sum(tl.where(idx[None, :] == n_cls - 1, c, 0.0), axis=1)  # c[n-1]
    thr = u0 * total
    label = tl.sum((ok & (c <= thr[:, None])).to(tl.int32), axis=1)
    return tl.minimum(label, n_cls - 1)


@triton.jit
def mol_tile(out, idx, u0, u1):
    """Mixture-of-logistics sample: out (BLOCK_B, NP) with 30 valid columns → (x float32, k int32)."""
    k = raw_tile(out, idx, 10, u0)  # inverse CDF of softmax(logit_probs) at u0
    mean = tl.sum(tl.where(idx[None, :] == k[:, None] + 10, out, 0.0), axis=1)
    log_scale = tl.maximum(tl.sum(tl.where(idx[None, :] == k[:, None] + 20, out, 0.0), axis=1), -7.0)
    u = tl.minimum(tl.maximum(u1, 1e-5), 1.0 - 1e-5)
    x = mean + tl.exp(log_scale) * (tl.log(u) - tl.log(1.0 - u))
    return tl.minimum(tl.maximum(x, -1.0), 1.0), k


@triton.jit
def _sample_kernel(
    logits_ptr, stride, B, n_out, u_ptr, seed, offset, label_ptr, x_ptr,
    MOL: tl.constexpr, PHILOX: tl.constexpr, BLOCK_B: tl.constexpr, NP: tl.constexpr,
):
    offs_b = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    mask_b = offs_b < B
    idx = tl.arange(0, NP)
    logits = tl.load(
        logits_ptr + offs_b[:, None] * stride + idx[None, :], mask=mask_b[:, None] & (idx[None, :] < n_out), other=0.0
    ).to(tl.float32)
    if PHILOX:
        u0, u1 = draw_uniforms(seed, offset + 2 * offs_b)
    else:
        u0 = tl.load(u_ptr + 2 * offs_b, mask=mask_b, other=0.5)
        u1 = tl.load(u_ptr + 2 * offs_b + 1, mask=mask_b, other=0.5)
    if MOL:
        x, label = mol_tile(logits, idx, u0, u1)
    else:
        label = raw_tile(logits, idx, n_out, u0)
        x = 2.0 * label.to(tl.float32) / (n_out - 1) - 1.0
    tl.store(label_ptr + offs_b, label, mask=mask_b)
    tl.store(x_ptr + offs_b, x, mask=mask_b)


@triton.jit
def _philox_kernel(u_ptr, seed, offset, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(u_ptr + offs, tl.rand(seed, offset + offs), mask=offs < n)


def check_mode(mode: str, n_out: int) -> str:
    """Normalise ``mode`` ("RAW" or "MOL"/"MoL") and check it against the number of outputs."""
    m = mode.upper()
    if m not in MODES:
        raise OptionsError(f"sampling mode must be RAW or MOL, got {mode!r}")
    if m == "MOL" and n_out != 3 * N_MIX:
        raise InputShapeError(f"MoL sampling needs {3 * N_MIX} outputs, got {n_out}")
    if m == "RAW" and n_out < 2:
        raise InputShapeError(f"RAW sampling needs at least 2 classes, got {n_out}")
    return m


def _check_seed(seed: int, offset: int, count: int) -> None:
    """Philox counters ``offset … offset + count - 1`` are int32 in the kernels."""
    if not 0 <= seed < 2**63 or not 0 <= offset or offset + count > 2**31:
        raise OptionsError(f"need 0 <= seed < 2**63 and 0 <= offset <= 2**31 - {count}, got {seed}, {offset}")


def sample(
    logits: torch.Tensor,
    mode: str = "RAW",
    *,
    uniforms: torch.Tensor | None = None,
    seed: int | None = None,
    offset: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample one value per row of ``logits`` (B, n_out) → (labels int32 (B,), x float32 (B,)).

    Give either ``uniforms`` (B, 2) float32 in [0, 1) (labels then equal :func:`sample_reference`'s
    up to float rounding at a CDF boundary) or a Philox ``seed`` (+ ``offset``, the counter of
    row 0's first draw). RAW labels are class indices, MoL labels are mixture components; ``x`` is
    the next model input (RAW: ``2*label/(n-1) - 1``, MoL: the clamped logistic draw). Tolerances
    against the reference: labels identical (a flip needs a uniform within float rounding of a CDF
    step), RAW ``x`` identical, MoL ``x`` within 2e-6 (exp/log rounding).
    """
    if logits.dim() != 2:
        raise InputShapeError(f"sample: logits must be (B, n_out), got {tuple(logits.shape)}")
    batch, n_out = logits.shape
    mol = check_mode(mode, n_out) == "MOL"
    if (uniforms is None) == (seed is None):
        raise OptionsError("sample: give exactly one of uniforms= or seed=")
    if uniforms is not None:
        if uniforms.shape != (batch, 2) or uniforms.dtype != torch.float32:
            raise InputShapeError(f"sample: uniforms must be float32 ({batch}, 2), got {tuple(uniforms.shape)}")
        uniforms = uniforms.contiguous()
    else:
        _check_seed(seed, offset, 2 * batch)
    require_backend(logits, *([uniforms] if uniforms is not None else []))
    if logits.stride(1) != 1:  # rows may be strided (even expanded with stride 0); columns contiguous
        logits = logits.contiguous()
    labels = torch.empty(batch, dtype=torch.int32, device=logits.device)  # (B,)
    x = torch.empty(batch, dtype=torch.float32, device=logits.device)  # (B,)
    if batch == 0:
        return labels, x
    # GPU: ~8K elements per program; the interpreter runs programs one by one, so use big tiles.
    tile = 1 << 17 if interpreting() else 8192
    block_b = max(1, min(256, triton.next_power_of_2(batch), tile // triton.next_power_of_2(n_out)))
    _sample_kernel[(triton.cdiv(batch, block_b),)](
        logits, logits.stride(0), batch, n_out, uniforms if uniforms is not None else x,
        seed or 0, offset, labels, x,
        MOL=mol, PHILOX=uniforms is None, BLOCK_B=block_b, NP=triton.next_power_of_2(n_out),
    )
    return labels, x


def philox_uniforms(
    seed: int, shape: tuple[int, ...], offset: int = 0, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """The float32 uniforms ``tl.rand(seed, offset + i)`` for ``i`` over ``shape`` in row-major order.

    ``philox_uniforms(seed, (B, 2), offset)`` are exactly the numbers ``sample(..., seed=seed,
    offset=offset)`` draws; ``philox_uniforms(seed, (B, T, 2))`` those of ``TritonWaveRNN.generate``.
    """
    u = torch.empty(shape, dtype=torch.float32, device=device)
    _check_seed(seed, offset, u.numel())
    require_backend(u)
    n = u.numel()
    if n == 0:
        return u
    block = 1024
    _philox_kernel[(triton.cdiv(n, block),)](u, seed, offset, n, BLOCK=block)
    return u


def _raw_reference(logits: torch.Tensor, u0: torch.Tensor) -> torch.Tensor:
    c = torch.cumsum(torch.softmax(logits, dim=1), dim=1)  # (B, n)
    labels = (c <= (u0 * c[:, -1])[:, None]).sum(dim=1).clamp(max=logits.shape[1] - 1)
    return labels  # (B,) int64


def sample_reference(
    logits: torch.Tensor, uniforms: torch.Tensor, mode: str = "RAW"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain-torch sampling from pre-drawn ``uniforms`` (B, 2), the spec's formulas (float32)."""
    batch, n_out = logits.shape
    logits = logits.float()
    if check_mode(mode, n_out) == "RAW":
        labels = _raw_reference(logits, uniforms[:, 0])
        return labels.to(torch.int32), 2.0 * labels.float() / (n_out - 1) - 1.0
    k = _raw_reference(logits[:, :N_MIX], uniforms[:, 0])  # (B,) inverse CDF of softmax(logit_probs)
    mean = logits[:, N_MIX:2 * N_MIX].gather(1, k[:, None])[:, 0]
    log_scale = logits[:, 2 * N_MIX:].gather(1, k[:, None])[:, 0].clamp(min=-7.0)
    u1 = uniforms[:, 1].clamp(1e-5, 1 - 1e-5)
    x = (mean + torch.exp(log_scale) * (torch.log(u1) - torch.log(1 - u1))).clamp(-1.0, 1.0)
    return k.to(torch.int32), x
