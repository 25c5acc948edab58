"""Launcher of the native WaveRNN sample loop: packs weights, precomputes conditioning, checks inputs.

Kernel (native.c) → launcher (this module) → plain-torch reference (reference.py).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import torch

from rtclone.errors import BackendUnavailableError, OptionsError
from rtclone.sparse import pack

from .reference import BIAS_KEYS, MATRIX_KEYS, LoopDims, State, check_inputs, loop_backend_dims

_native = None
_import_error: str | None = None


def _load():
    global _native, _import_error
    if _native is None and _import_error is None:
        try:
            _native = importlib.import_module(f"{__package__}._native")
        except ImportError as exc:  # the optional extension was not built
            _import_error = f"rtclone.kernels.cpu._native is not built ({exc}); reinstall with a C compiler"
    return _native


def available() -> bool:
    """True when the native extension is importable here."""
    return _load() is not None


def unavailable_reason() -> str | None:
    """Why :func:`available` is False (None when it is True)."""
    _load()
    return _import_error


# Bytes of precomputed conditioning products kept per call (bounds memory for long inputs).
_ADDEND_BUDGET = 16 << 20


@dataclass(frozen=True)
class _Stage:
    key: str  # weight key
    rec_cols: int  # leading columns fed by the recurrence
    cond_slice: tuple[int, int]  # columns of cond feeding the remaining columns (empty: none)


@dataclass
class _PackedMatrix:
    rows: int
    cols: int
    block: tuple[int, int]
    row_ptr: torch.Tensor  # (rows // bh + 1,) int32
    col_idx: torch.Tensor | None  # (nnzb,) int32, None when dense
    values: torch.Tensor  # (nnzb, bw, bh) float32 or float16
    density: float

    def descriptor(self) -> tuple:
        return (
            self.rows,
            self.cols,
            self.block[0],
            self.block[1],
            self.row_ptr.data_ptr(),
            0 if self.col_idx is None else self.col_idx.data_ptr(),
            self.values.data_ptr(),
            int(self.values.dtype == torch.float16),
        )


def _prepare_matrix(w: torch.Tensor, block: tuple[int, int], dtype: torch.dtype, dense_threshold: float) -> _PackedMatrix:
    rows, cols = w.shape
    bh, bw = block
    if rows % bh:  # pad with zero rows (e.g. MoL's 30 outputs); the kernel ignores them
        w = torch.cat([w, w.new_zeros(bh - rows % bh, cols)])
        rows = w.shape[0]
    packed = pack(w, block, torch.float32)
    if packed.density >= dense_threshold:  # dense path: every block, no column index
        nbr, nbc = rows // bh, cols // bw
        values = w.reshape(nbr, bh, nbc, bw).permute(0, 2, 3, 1).reshape(nbr * nbc, bw, bh)
        row_ptr = (torch.arange(nbr + 1, dtype=torch.int32) * nbc).contiguous()
        return _PackedMatrix(rows, cols, block, row_ptr, None, values.to(dtype).contiguous(), packed.density)
    values = packed.values.transpose(1, 2).to(dtype).contiguous()  # (nnzb, bw, bh)
    return _PackedMatrix(rows, cols, block, packed.row_ptr, packed.col_idx, values, packed.density)


class NativeWaveRNN:
    """The WaveRNN sample loop (spec: /work/notes/wavernn_spec.md) on the native CPU kernel.

    Zero (bh, bw) blocks of the loop's matrices are skipped (packed with rtclone.sparse.pack);
    a matrix with at least ``dense_threshold`` of its blocks kept runs the dense path.
    ``value_dtype=torch.float16`` stores weights in half precision (F16C), accumulating in float32.
    ``threads`` OpenMP threads run independent streams (folds) in parallel.
    ``precompute``: "auto" | "always" | "never" - compute the conditioning columns' products of I,
    rnn2's input, fc1 and fc2 for all steps with one dense GEMM per chunk before the loop, instead
    of inside it. "auto" precomputes a matrix's conditioning part only when it is mostly dense
    (for pruned weights the in-loop sparse product is cheaper than the dense GEMM).
    ``vectorized=False`` forces the portable scalar path (it is also used when the CPU lacks
    AVX2/FMA/F16C; ``self.vectorized`` says which path runs). The fast AVX2 kernels cover
    (16, 1) blocks; other block shapes run a generic loop.
    Tolerances against :func:`reference_generate`: see tests/test_kernels_cpu.py.
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
        precompute: str = "auto",
        dense_threshold: float = 0.9,
        vectorized: bool = True,
    ) -> None:
        native = _load()
        if native is None:
            raise BackendUnavailableError(_import_error or "native CPU kernel unavailable")
        if precompute not in ("auto", "always", "never"):
            raise OptionsError(f"precompute must be 'auto', 'always' or 'never', got {precompute!r}")
        self.dims: LoopDims = loop_backend_dims(state_dict, mode, bits, value_dtype, threads)
        self.threads = threads
        d = self.dims
        R, Fd, feat, aux = d.rnn_dims, d.fc_dims, d.feat_dims, d.aux_dims
        stages = (
            _Stage("I.weight", 1, (0, feat + aux)),
            _Stage("rnn1.weight_ih_l0", R, (0, 0)),
            _Stage("rnn1.weight_hh_l0", R, (0, 0)),
            _Stage("rnn2.weight_ih_l0", R, (feat + aux, feat + 2 * aux)),
            _Stage("rnn2.weight_hh_l0", R, (0, 0)),
            _Stage("fc1.weight", R, (feat + 2 * aux, feat + 3 * aux)),
            _Stage("fc2.weight", Fd, (feat + 3 * aux, feat + 4 * aux)),
            _Stage("fc3.weight", Fd, (0, 0)),
        )
        self.mats: list[_PackedMatrix] = []
        self.cond_weights: list[tuple[tuple[int, int], torch.Tensor] | None] = []  # per addend slot
        for stage in stages:
            w = state_dict[stage.key].detach().to("cpu", torch.float32).contiguous()
            if value_dtype == torch.float16:  # the precomputed part sees the same rounded weights
                w = w.half().float()
            c0, c1 = stage.cond_slice
            has_cond = c1 > c0
            cond_part = w[:, stage.rec_cols :]
            dense_cond = has_cond and float(cond_part.ne(0).float().mean()) >= 0.5
            pre = has_cond and (precompute == "always" or (precompute == "auto" and dense_cond))
            if has_cond:
                self.cond_weights.append(((c0, c1), cond_part.t().contiguous()) if pre else None)
            mw = w[:, : stage.rec_cols].contiguous() if pre else w
            blk = (block[0], 1) if stage.key == "I.weight" else tuple(block)
            self.mats.append(_prepare_matrix(mw, blk, value_dtype, dense_threshold))
        self._biases = [
            torch.cat([b, b.new_zeros(m.rows - b.shape[0])]).contiguous()
            for b, m in zip((state_dict[k].detach().to("cpu", torch.float32) for k in BIAS_KEYS), self.mats)
        ]
        self._model = native.make_model(
            tuple(m.descriptor() for m in self.mats),
            tuple(b.data_ptr() for b in self._biases),
            (R, Fd, d.n_out, feat, aux, int(d.mol), int(vectorized)),
        )
        self.vectorized = bool(native.uses_avx2(self._model))

    @property
    def densities(self) -> dict[str, float]:
        """Fraction of blocks kept per matrix (as packed; conditioning columns excluded when precomputed)."""
        return {k: m.density for k, m in zip(MATRIX_KEYS, self.mats)}

    def generate(self, cond: torch.Tensor, uniforms: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """cond (B, T, feat + 4 aux), uniforms (B, T, 2) → samples (B, T), state (x (B,), h1 (B, R), h2 (B, R)).

        Raises InputShapeError for wrong shapes, mismatched B or non-finite values. The caller's
        state tensors are not modified.
        """
        d = self.dims
        check_inputs(d, cond, uniforms, state)
        B, T, W = cond.shape
        cond = cond.detach().to("cpu", torch.float32).contiguous()
        uniforms = uniforms.detach().to("cpu", torch.float32).contiguous()
        if state is None:
            x, h1, h2 = torch.zeros(B), torch.zeros(B, d.rnn_dims), torch.zeros(B, d.rnn_dims)
        else:
            x, h1, h2 = (s.detach().to("cpu", torch.float32).clone().contiguous() for s in state)
        out = torch.empty(B, T)
        if B == 0 or T == 0:
            return out, (x, h1, h2)
        pre = self.cond_weights
        width = sum(cw[1].shape[1] for cw in pre if cw is not None)
        chunk = T if width == 0 else max(64, _ADDEND_BUDGET // (4 * B * width))
        for t0 in range(0, T, chunk):
            tc = min(chunk, T - t0)
            adds = []
            for cw in pre:
                if cw is None:
                    adds.append(None)
                else:
                    (c0, c1), wt = cw
                    adds.append(torch.matmul(cond[:, t0 : t0 + tc, c0:c1], wt).contiguous())  # (B, tc, rows)
            self._run(B, tc, cond, t0, T, W, uniforms, out, x, h1, h2, adds)
        return out, (x, h1, h2)

    def _run(self, B, tc, cond, t0, T, W, uniforms, out, x, h1, h2, adds) -> None:
        f = 4  # bytes per float32
        _native.run(
            self._model,
            B,
            tc,
            self.threads,
            cond.data_ptr() + t0 * W * f,
            T * W,
            W,
            uniforms.data_ptr() + t0 * 2 * f,
            T * 2,
            out.data_ptr() + t0 * f,
            T,
            x.data_ptr(),
            h1.data_ptr(),
            h2.data_ptr(),
            tuple(0 if a is None else a.data_ptr() for a in adds),
            tc,
        )
