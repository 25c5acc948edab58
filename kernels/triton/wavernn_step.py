"""Persistent Triton kernel for the WaveRNN sample loop (spec: I → GRU1 → GRU2 → FC1-3 → sample).

One launch runs all ``T`` steps for ``B`` streams: program ``p`` owns streams
``p*BLOCK_B … p*BLOCK_B+BLOCK_B-1`` and keeps their state (x, h1, h2 and the layer outputs) in
small device buffers for the whole loop, so there is no launch and no host synchronisation per
sample. Inside a step every layer is a block-sparse product (:func:`bsr_rows_tile`, shared with
``bsr_gemv``) whose input is gathered straight from ``[previous layer | cond slice]``; layers are
separated by ``tl.debug_barrier()`` (all threads of the program see the previous layer's output).
The hidden states are double-buffered across steps. Sampling (RAW inverse-CDF or MoL) uses the
shared helpers of ``sampling``, from pre-drawn uniforms (B, T, 2) or from Philox
(``tl.rand(seed, 2*(b*T + t) + j)``, i.e. the layout of :func:`philox_uniforms` (B, T, 2)).

Limitation by design: streams never cooperate across programs (a cross-program barrier cannot be
expressed portably and hangs triton's interpreter), so one stream uses one SM on a GPU; B streams
(folds) fill B/BLOCK_B SMs. The plain-torch reference is the shared loop oracle
:func:`rtclone.kernels.cpu.reference.reference_generate`, re-exported here as
:func:`wavernn_reference`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from rtclone.errors import InputShapeError, OptionsError
from rtclone.kernels.cpu.reference import (BIAS_KEYS, MATRIX_KEYS, State, check_inputs, loop_backend_dims,
                                          reference_generate)
from rtclone.sparse import BlockSparseMatrix, pack

from . import interpreting, require_backend
from .bsr_gemv import bsr_rows_tile, check_matrix, max_slots
from .sampling import draw_uniforms, mol_tile, raw_tile

wavernn_reference = reference_generate  # the plain-torch loop this kernel must match


@triton.jit
def _sigmoid(x):
    return 1.0 / (1.0 + tl.exp(-x))


@triton.jit
def _tanh(x):
    return 2.0 / (1.0 + tl.exp(-2.0 * x)) - 1.0  # libdevice tanh is unavailable in the interpreter


@triton.jit
def _layer(
    w, c, p, ms, bias, src1, s1, n1, src2, s2, n_in, dst, dst_stride, n_rows, offs_b, mask_b,
    RELU: tl.constexpr, BH: tl.constexpr, BW: tl.constexpr,
    BLOCK_B: tl.constexpr, ROWS: tl.constexpr, SLOTS: tl.constexpr,
):
    """dst[b, :n_rows] = act(W @ [src1 | src2] + bias), ROWS rows at a time."""
    for row0 in range(0, n_rows, ROWS):
        acc = bsr_rows_tile(
            w, c, p, ms, src1, s1, n1, src2, s2, n_in, offs_b, mask_b, row0, n_rows, BH, BW, BLOCK_B, ROWS, SLOTS
        )
        rows = tl.arange(0, ROWS).to(tl.int64) + row0
        ok = rows < n_rows
        acc += tl.load(bias + rows, mask=ok, other=0.0)[None, :]
        if RELU:
            acc = tl.maximum(acc, 0.0)
        tl.store(dst + offs_b[:, None] * dst_stride + rows[None, :], acc, mask=mask_b[:, None] & ok[None, :])


@triton.jit
def _gru(
    wi, ci, pi, msi, bi, wh, ch, ph, msh, bh, src1, s1, n1, src2, s2, n_in,
    h_old, h_new, res, dst, R, offs_b, mask_b,
    BH: tl.constexpr, BW: tl.constexpr, BLOCK_B: tl.constexpr, ROWS: tl.constexpr, SLOTS: tl.constexpr,
):
    """h_new = GRUCell([src1 | src2], h_old) (gate order r, z, n); dst = res + h_new. Buffers (B, R)."""
    for row0 in range(0, R, ROWS):
        rows = tl.arange(0, ROWS).to(tl.int64) + row0
        ok = rows < R
        m2 = mask_b[:, None] & ok[None, :]
        offs = offs_b[:, None] * R + rows[None, :]
        # gate g of a (3R, ·) matrix: rows g*R + rows (masked at (g+1)*R), bias b[g*R + rows]
        gi_r = bsr_rows_tile(wi, ci, pi, msi, src1, s1, n1, src2, s2, n_in, offs_b, mask_b, row0, R,
                             BH, BW, BLOCK_B, ROWS, SLOTS) + tl.load(bi + rows, mask=ok, other=0.0)[None, :]
        gh_r = bsr_rows_tile(wh, ch, ph, msh, h_old, R, R, h_old, R, R, offs_b, mask_b, row0, R,
                             BH, BW, BLOCK_B, ROWS, SLOTS) + tl.load(bh + rows, mask=ok, other=0.0)[None, :]
        r = _sigmoid(gi_r + gh_r)
        gi_z = bsr_rows_tile(wi, ci, pi, msi, src1, s1, n1, src2, s2, n_in, offs_b, mask_b, R + row0, 2 * R,
                             BH, BW, BLOCK_B, ROWS, SLOTS) + tl.load(bi + R + rows, mask=ok, other=0.0)[None, :]
        gh_z = bsr_rows_tile(wh, ch, ph, msh, h_old, R, R, h_old, R, R, offs_b, mask_b, R + row0, 2 * R,
                             BH, BW, BLOCK_B, ROWS, SLOTS) + tl.load(bh + R + rows, mask=ok, other=0.0)[None, :]
        z = _sigmoid(gi_z + gh_z)
        gi_n = bsr_rows_tile(wi, ci, pi, msi, src1, s1, n1, src2, s2, n_in, offs_b, mask_b, 2 * R + row0, 3 * R,
                             BH, BW, BLOCK_B, ROWS, SLOTS) + tl.load(bi + 2 * R + rows, mask=ok, other=0.0)[None, :]
        gh_n = bsr_rows_tile(wh, ch, ph, msh, h_old, R, R, h_old, R, R, offs_b, mask_b, 2 * R + row0, 3 * R,
                             BH, BW, BLOCK_B, ROWS, SLOTS) + tl.load(bh + 2 * R + rows, mask=ok, other=0.0)[None, :]
        n = _tanh(gi_n + r * gh_n)
        h = (1.0 - z) * n + z * tl.load(h_old + offs, mask=m2, other=0.0)
        tl.store(h_new + offs, h, mask=m2)
        tl.store(dst + offs, tl.load(res + offs, mask=m2, other=0.0) + h, mask=m2)


@triton.jit
def _wavernn_kernel(
    wI, cI, pI, mI, bI, wA, cA, pA, mA, bA, wB, cB, pB, mB, bB, wC, cC, pC, mC, bC,
    wD, cD, pD, mD, bD, wE, cE, pE, mE, bE, wF, cF, pF, mF, bF, wG, cG, pG, mG, bG,
    cond, cond_sb, cond_st, u_ptr, seed, out_ptr, x_buf, h1_buf, h2_buf,
    i_buf, x1_buf, x2_buf, f1_buf, f2_buf, logit_buf,
    B, T, R, FC, FEAT, AUX, N_OUT,
    MOL: tl.constexpr, PHILOX: tl.constexpr, BH: tl.constexpr, BW: tl.constexpr,
    BLOCK_B: tl.constexpr, ROWS: tl.constexpr, SLOTS: tl.constexpr, NP: tl.constexpr,
):
    # matrices: I, rnn1 ih (A) / hh (B), rnn2 ih (C) / hh (D), fc1 (E), fc2 (F), fc3 (G)
    offs_b = (tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)).to(tl.int64)
    mask_b = offs_b < B
    idx = tl.arange(0, NP)
    for t in range(0, T):
        c_t = cond + t * cond_st  # cond[:, t] = [m | a1 | a2 | a3 | a4]
        h1_old = h1_buf + (t % 2) * B * R
        h1_new = h1_buf + ((t + 1) % 2) * B * R
        h2_old = h2_buf + (t % 2) * B * R
        h2_new = h2_buf + ((t + 1) % 2) * B * R
        _layer(wI, cI, pI, mI, bI, x_buf, 1, 1, c_t, cond_sb, 1 + FEAT + AUX, i_buf, R, R, offs_b, mask_b,
               False, BH, BW, BLOCK_B, ROWS, SLOTS)  # i = I @ [x | m | a1]
        tl.debug_barrier()
        _gru(wA, cA, pA, mA, bA, wB, cB, pB, mB, bB, i_buf, R, R, i_buf, R, R,
             h1_old, h1_new, i_buf, x1_buf, R, offs_b, mask_b, BH, BW, BLOCK_B, ROWS, SLOTS)  # x1 = i + h1
        tl.debug_barrier()
        _gru(wC, cC, pC, mC, bC, wD, cD, pD, mD, bD, x1_buf, R, R, c_t + FEAT + AUX, cond_sb, R + AUX,
             h2_old, h2_new, x1_buf, x2_buf, R, offs_b, mask_b, BH, BW, BLOCK_B, ROWS, SLOTS)  # x2 = x1 + h2
        tl.debug_barrier()
        _layer(wE, cE, pE, mE, bE, x2_buf, R, R, c_t + FEAT + 2 * AUX, cond_sb, R + AUX, f1_buf, FC, FC,
               offs_b, mask_b, True, BH, BW, BLOCK_B, ROWS, SLOTS)
        tl.debug_barrier()
        _layer(wF, cF, pF, mF, bF, f1_buf, FC, FC, c_t + FEAT + 3 * AUX, cond_sb, FC + AUX, f2_buf, FC, FC,
               offs_b, mask_b, True, BH, BW, BLOCK_B, ROWS, SLOTS)
        tl.debug_barrier()
        _layer(wG, cG, pG, mG, bG, f2_buf, FC, FC, f2_buf, FC, FC, logit_buf, NP, N_OUT,
               offs_b, mask_b, False, BH, BW, BLOCK_B, ROWS, SLOTS)
        tl.debug_barrier()
        logits = tl.load(logit_buf + offs_b[:, None] * NP + idx[None, :],
                         mask=mask_b[:, None] & (idx[None, :] < N_OUT), other=0.0)
        counter = 2 * (offs_b * T + t)
        if PHILOX:
            u0, u1 = draw_uniforms(seed, counter)
        else:
            u0 = tl.load(u_ptr + counter, mask=mask_b, other=0.5)
            u1 = tl.load(u_ptr + counter + 1, mask=mask_b, other=0.5)
        if MOL:
            x, k = mol_tile(logits, idx, u0, u1)
        else:
            label = raw_tile(logits, idx, N_OUT, u0)
            x = 2.0 * label.to(tl.float32) / (N_OUT - 1) - 1.0
        tl.store(out_ptr + offs_b * T + t, x, mask=mask_b)
        tl.store(x_buf + offs_b, x, mask=mask_b)
        tl.debug_barrier()


def _pow2(n: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, triton.next_power_of_2(max(n, 1))))


class TritonWaveRNN:
    """The WaveRNN sample loop (spec: wavernn_spec.md) as one persistent Triton kernel per call.

    Same constructor and ``generate`` as :class:`rtclone.kernels.cpu.NativeWaveRNN`, so the
    vocoder's ``backend="triton"`` can dispatch to either. Weights are packed with
    :func:`rtclone.sparse.pack` into ``block`` blocks (zero blocks skipped; rows/columns padded
    with zeros to a multiple of the block) and stored as ``value_dtype`` (float32 or float16),
    accumulating in float32. ``threads`` is accepted for signature parity and ignored.

    On a CUDA machine the kernel runs on the GPU. Without one it runs only in triton's CPU
    interpreter (``TRITON_INTERPRET=1``), about 0.2-0.4 s of CPU per step at R = F = 32: for tests,
    never for real use. Tolerances against :func:`wavernn_reference` (float32): samples equal
    for RAW (labels identical unless a uniform lands within float rounding of a CDF boundary),
    MoL samples and hidden states within 1e-4 absolute.
    """

    def __init__(
        self,
        state_dict: dict[str, torch.Tensor],
        *,
        mode: str = "RAW",
        bits: int = 9,
        block: tuple[int, int] = (16, 1),
        value_dtype: torch.dtype = torch.float32,
        threads: int = 1,
        device: str | torch.device | None = None,
    ) -> None:
        self.dims = loop_backend_dims(state_dict, mode, bits, value_dtype, threads, block)
        self.block = (int(block[0]), int(block[1]))
        if device is None:
            device = "cuda" if torch.cuda.is_available() and not interpreting() else "cpu"
        self.device = torch.device(device)
        self.mats: list[BlockSparseMatrix] = []
        self.slots: list[int] = []
        self.biases: list[torch.Tensor] = []
        bh, bw = self.block
        for wkey, bkey in zip(MATRIX_KEYS, BIAS_KEYS):
            w = state_dict[wkey].detach().float().cpu()  # (rows, cols)
            w = F.pad(w, (0, -w.shape[1] % bw, 0, -w.shape[0] % bh))
            m = pack(w, self.block, value_dtype)
            m = BlockSparseMatrix(m.shape, m.block, m.values.to(self.device), m.col_idx.to(self.device),
                                  m.row_ptr.to(self.device))
            check_matrix(m, wkey)
            self.mats.append(m)
            self.slots.append(max_slots(m))
            self.biases.append(state_dict[bkey].detach().float().contiguous().to(self.device))

    @property
    def densities(self) -> dict[str, float]:
        """Fraction of blocks kept per matrix (as packed)."""
        return {k: m.density for k, m in zip(MATRIX_KEYS, self.mats)}

    def generate(
        self,
        cond: torch.Tensor,
        uniforms: torch.Tensor | None,
        state: State | None = None,
        *,
        seed: int | None = None,
    ) -> tuple[torch.Tensor, State]:
        """cond (B, T, feat + 4 aux), uniforms (B, T, 2) → samples (B, T), state (x (B,), h1 (B, R), h2 (B, R)).

        ``uniforms=None`` with ``seed=N`` draws them on device with Philox instead (the numbers of
        ``philox_uniforms(N, (B, T, 2))``); the same seed gives bit-identical samples. Inputs may live
        on any device; the loop runs on ``self.device`` and the results come back on ``cond``'s.
        """
        d = self.dims
        if (uniforms is None) == (seed is None):
            raise OptionsError("generate: give exactly one of uniforms or seed=")
        if seed is not None and not 0 <= seed < 2**63:
            raise OptionsError(f"seed must be in [0, 2**63), got {seed}")
        if cond.dim() != 3:
            raise InputShapeError(f"cond must be (B, T, {d.cond_dims}), got {tuple(cond.shape)}")
        B, T = cond.shape[0], cond.shape[1]
        check_inputs(d, cond, uniforms if uniforms is not None else cond.new_full((B, T, 2), 0.5), state)
        if B * T * 2 >= 2**31:
            raise InputShapeError(f"generate: B*T = {B * T} is too large for one call; split the time axis")
        dev, home = self.device, cond.device  # results go back to the caller's device
        kw = dict(dtype=torch.float32, device=dev)
        R, FC = d.rnn_dims, d.fc_dims
        cond = cond.to(**kw).contiguous()  # (B, T, C)
        u = uniforms.to(**kw).contiguous() if uniforms is not None else cond  # (B, T, 2)
        x_buf = torch.zeros(B, **kw) if state is None else state[0].to(**kw).clone()  # (B,)
        h1_buf = torch.zeros(2, B, R, **kw)  # double-buffered (slot t % 2 holds h before step t)
        h2_buf = torch.zeros(2, B, R, **kw)
        if state is not None:
            h1_buf[0] = state[1].to(**kw)
            h2_buf[0] = state[2].to(**kw)
        out = torch.empty(B, T, **kw)
        if T == 0 or B == 0:
            return out.to(home), (x_buf.to(home), h1_buf[0].to(home), h2_buf[0].to(home))
        require_backend(cond, self.mats[0].values)
        np_ = triton.next_power_of_2(d.n_out)
        scratch = [torch.empty(B, n, **kw) for n in (R, R, R, FC, FC, np_)]  # i, x1, x2, f1, f2, logits
        big = interpreting()  # GPU: a (BLOCK_B, ROWS, SLOTS) tile of <= 2K elements per layer step
        block_b = _pow2(B, 1, 16 if big else 4)
        weights = []
        for m, s, b in zip(self.mats, self.slots, self.biases):
            weights += [m.values, m.col_idx, m.row_ptr, s, b]
        _wavernn_kernel[(triton.cdiv(B, block_b),)](
            *weights,
            cond, cond.stride(0), cond.stride(1), u, seed or 0, out, x_buf, h1_buf, h2_buf, *scratch,
            B, T, R, FC, d.feat_dims, d.aux_dims, d.n_out,
            MOL=d.mol, PHILOX=uniforms is None, BH=self.block[0], BW=self.block[1],
            BLOCK_B=block_b, ROWS=_pow2(max(R, FC), 16, 32 if big else 16),
            SLOTS=_pow2(max(self.slots), 8, 64 if big else 32), NP=np_,
        )
        return out.to(home), (x_buf.to(home), h1_buf[T % 2].clone().to(home), h2_buf[T % 2].clone().to(home))
