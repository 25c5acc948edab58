"""Block-sparse GEMV/GEMM ``y = x @ W.T (+ bias)`` on a packed :class:`BlockSparseMatrix`.

Kernel layout: one program computes a tile of ``ROWS`` output rows for ``BLOCK_B`` batch rows.
Every output row ``i`` belongs to block-row ``i // bh``; its kept blocks are read straight from
the BSR arrays (``row_ptr``/``col_idx``/``values``) as "slots" ``q = m * bw + j`` (block ``m`` of
the block-row, column ``j`` inside the block), ``SLOTS`` at a time, so the loop length is the
longest block-row, not the dense width. The input is gathered by column index and the products
are reduced in float32 whatever the value dtype (fp32, fp16; bf16 is rejected because the
interpreter's bf16 handling is unreliable). Any block shape works (16×1, 8×4, 4×4, …); the weight
tile is read once per program and reused across the ``BLOCK_B`` inputs.

The device helper :func:`bsr_rows_tile` is shared with the persistent WaveRNN kernel, which gathers
its input from two concatenated sources (e.g. ``[h | aux]``) without copying them together.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from rtclone.errors import InputShapeError
from rtclone.sparse import BlockSparseMatrix

from . import interpreting, require_backend


@triton.jit
def bsr_rows_tile(
    vals_ptr, col_ptr, rowptr_ptr, max_slots,  # BSR arrays; max_slots = bw * (most blocks in a block-row)
    src1_ptr, src1_stride, n1,  # input columns [0, n1) come from src1 (per-stream stride)
    src2_ptr, src2_stride, n_in,  # input columns [n1, n_in) come from src2 (column c -> src2[c - n1])
    offs_b, mask_b,  # (BLOCK_B,) stream/batch indices and their validity
    row0, row_end,  # rows row0 .. row0+ROWS-1 are computed; rows >= row_end are masked
    BH: tl.constexpr, BW: tl.constexpr, BLOCK_B: tl.constexpr, ROWS: tl.constexpr, SLOTS: tl.constexpr,
):
    """(BLOCK_B, ROWS) float32 tile of ``W[row0:row0+ROWS] @ [src1 | src2]`` per stream."""
    # Index math is int64: no int32 overflow for large inputs, and triton's interpreter skips its
    # (slow) int32 overflow checks.
    rows = tl.arange(0, ROWS).to(tl.int64) + row0  # (ROWS,)
    row_ok = rows < row_end
    brow = rows // BH
    start = tl.load(rowptr_ptr + brow, mask=row_ok, other=0).to(tl.int64)
    count = tl.load(rowptr_ptr + brow + 1, mask=row_ok, other=0).to(tl.int64) - start
    in_row = (rows % BH) * BW  # offset of the row inside its (BH, BW) block
    acc = tl.zeros((BLOCK_B, ROWS), dtype=tl.float32)
    for k0 in range(0, max_slots, SLOTS):
        q = tl.arange(0, SLOTS).to(tl.int64) + k0  # (SLOTS,)
        m = q // BW
        j = q % BW
        ok = row_ok[:, None] & (m[None, :] < count[:, None])  # (ROWS, SLOTS)
        blk = start[:, None] + m[None, :]
        col = tl.load(col_ptr + blk, mask=ok, other=0).to(tl.int64) * BW + j[None, :]
        w = tl.load(vals_ptr + blk * (BH * BW) + in_row[:, None] + j[None, :], mask=ok, other=0.0)
        ok = ok & (col < n_in)  # columns padded past the input width
        col3 = col[None, :, :]  # (1, ROWS, SLOTS)
        b3 = offs_b[:, None, None]  # (BLOCK_B, 1, 1)
        ptr = tl.where(col3 < n1, src1_ptr + b3 * src1_stride + col3, src2_ptr + b3 * src2_stride + (col3 - n1))
        xv = tl.load(ptr, mask=mask_b[:, None, None] & ok[None, :, :], other=0.0)
        acc += tl.sum(xv.to(tl.float32) * w.to(tl.float32)[None, :, :], axis=2)
    return acc


@triton.jit
def _bsr_matmul_kernel(
    vals_ptr, col_ptr, rowptr_ptr, max_slots,
    x_ptr, x_stride, n_in, bias_ptr, y_ptr, y_stride, n_rows, B,
    HAS_BIAS: tl.constexpr, BH: tl.constexpr, BW: tl.constexpr,
    BLOCK_B: tl.constexpr, ROWS: tl.constexpr, SLOTS: tl.constexpr,
):
    offs_b = tl.program_id(1) * BLOCK_B + tl.arange(0, BLOCK_B)
    mask_b = offs_b < B
    row0 = tl.program_id(0) * ROWS
    acc = bsr_rows_tile(
        vals_ptr, col_ptr, rowptr_ptr, max_slots,
        x_ptr, x_stride, n_in, x_ptr, x_stride, n_in,
        offs_b, mask_b, row0, n_rows,
        BH, BW, BLOCK_B, ROWS, SLOTS,
    )
    rows = row0 + tl.arange(0, ROWS)
    row_ok = rows < n_rows
    if HAS_BIAS:
        acc += tl.load(bias_ptr + rows, mask=row_ok, other=0.0)[None, :]
    tl.store(y_ptr + offs_b[:, None] * y_stride + rows[None, :], acc, mask=mask_b[:, None] & row_ok[None, :])


@triton.jit
def _bsr_matmul_dot_kernel(
    vals_ptr, col_ptr, rowptr_ptr, x_ptr, x_stride, bias_ptr, y_ptr, y_stride, B,
    HAS_BIAS: tl.constexpr, FP16: tl.constexpr, BH: tl.constexpr, BW: tl.constexpr,
    BLOCK_B: tl.constexpr, SLOTS: tl.constexpr,
):
    # One program = one block-row (BH rows share their column indices), BLOCK_B inputs: the slots
    # form a dense (BLOCK_B, SLOTS) x (SLOTS, BH) product for tl.dot, whatever the block width.
    r = tl.program_id(0)
    offs_b = (tl.program_id(1) * BLOCK_B + tl.arange(0, BLOCK_B)).to(tl.int64)
    mask_b = offs_b < B
    start = tl.load(rowptr_ptr + r).to(tl.int64)
    count = tl.load(rowptr_ptr + r + 1).to(tl.int64) - start
    i = tl.arange(0, BH)
    acc = tl.zeros((BLOCK_B, BH), dtype=tl.float32)
    for k0 in range(0, count * BW, SLOTS):
        q = tl.arange(0, SLOTS).to(tl.int64) + k0
        m = q // BW
        j = q % BW
        ok = m < count
        blk = start + m
        col = tl.load(col_ptr + blk, mask=ok, other=0).to(tl.int64) * BW + j  # (SLOTS,)
        w = tl.load(vals_ptr + blk[None, :] * (BH * BW) + i[:, None] * BW + j[None, :], mask=ok[None, :], other=0.0)
        xv = tl.load(x_ptr + offs_b[:, None] * x_stride + col[None, :], mask=mask_b[:, None] & ok[None, :], other=0.0)
        if FP16:
            acc = tl.dot(xv.to(tl.float16), tl.trans(w.to(tl.float16)), acc)
        else:
            acc = tl.dot(xv.to(tl.float32), tl.trans(w.to(tl.float32)), acc)
    rows = r * BH + i
    if HAS_BIAS:
        acc += tl.load(bias_ptr + rows)[None, :]
    tl.store(y_ptr + offs_b[:, None] * y_stride + rows[None, :], acc, mask=mask_b[:, None])


def max_slots(w: BlockSparseMatrix) -> int:
    """``bw`` × the largest number of kept blocks in one block-row (the kernel's loop length)."""
    counts = w.row_ptr[1:] - w.row_ptr[:-1]
    return int(counts.max().item()) * w.block[1] if counts.numel() else 0


def check_matrix(w: BlockSparseMatrix, where: str) -> None:
    """Raise ``InputShapeError`` unless ``w`` is a well-formed BSR matrix the kernels accept."""
    rows, cols = w.shape
    bh, bw = w.block
    if bh < 1 or bw < 1 or rows % bh or cols % bw:
        raise InputShapeError(f"{where}: block {w.block} does not tile a {rows}x{cols} matrix")
    if w.values.dtype not in (torch.float32, torch.float16):
        raise InputShapeError(f"{where}: value dtype {w.values.dtype} is not supported (float32 or float16)")
    if w.values.dim() != 3 or tuple(w.values.shape[1:]) != (bh, bw) or not w.values.is_contiguous():
        raise InputShapeError(f"{where}: values must be a contiguous (nnzb, {bh}, {bw}) tensor")
    if w.row_ptr.numel() != rows // bh + 1 or w.col_idx.numel() != w.values.shape[0]:
        raise InputShapeError(f"{where}: row_ptr/col_idx sizes do not match the values")
    if w.row_ptr.dtype != torch.int32 or w.col_idx.dtype != torch.int32:
        raise InputShapeError(f"{where}: row_ptr and col_idx must be int32")


def _pow2(n: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, triton.next_power_of_2(max(n, 1))))


def dot_path_ok(w: BlockSparseMatrix, batch: int) -> bool:
    """Whether the ``tl.dot`` path applies: bh a power of two in 16…128 (tl.dot's N) and B ≥ 16 (M)."""
    bh = w.block[0]
    return batch >= 16 and 16 <= bh <= 128 and bh & (bh - 1) == 0


def bsr_matmul(
    w: BlockSparseMatrix, x: torch.Tensor, bias: torch.Tensor | None = None, *, use_dot: bool | None = None
) -> torch.Tensor:
    """``x @ W.T + bias`` with ``W`` block-sparse: ``x`` (B, cols) or (cols,) → float32 (B, rows) or (rows,).

    ``B`` up to a few hundred (tuned for 1…64). Values may be float32 or float16; the input may be
    float32 or float16; accumulation is float32. The gather path matches
    :func:`bsr_matmul_reference` to float32 summation-order tolerance (about 1e-5 relative).

    ``use_dot`` selects the ``tl.dot`` (tensor-core) path, one block-row per program, available
    when :func:`dot_path_ok` (16 ≤ bh ≤ 128, B ≥ 16; any bw, 16×1 included); ``None`` picks it on
    a GPU when it applies. Its inputs are rounded like the hardware's: TF32 for float32 values
    (about 1e-3 relative on a GPU), float16 inputs for float16 values.
    """
    check_matrix(w, "bsr_matmul")
    rows, cols = w.shape
    squeeze = x.dim() == 1
    x2 = x.unsqueeze(0) if squeeze else x
    if x2.dim() != 2 or x2.shape[1] != cols:
        raise InputShapeError(f"bsr_matmul: x must be ({cols},) or (B, {cols}), got {tuple(x.shape)}")
    if x2.dtype not in (torch.float32, torch.float16):
        raise InputShapeError(f"bsr_matmul: x dtype {x2.dtype} is not supported")
    if bias is not None and (bias.shape != (rows,) or bias.dtype != torch.float32):
        raise InputShapeError(f"bsr_matmul: bias must be float32 ({rows},), got {tuple(bias.shape)} {bias.dtype}")
    tensors = [w.values, w.col_idx, w.row_ptr, x2] + ([bias] if bias is not None else [])
    require_backend(*tensors)
    x2 = x2.contiguous()
    batch = x2.shape[0]
    y = torch.empty(batch, rows, dtype=torch.float32, device=x2.device)  # (B, rows)
    if batch == 0 or rows == 0:
        return y[0] if squeeze else y
    bh, bw = w.block
    if use_dot is None:
        use_dot = not interpreting() and dot_path_ok(w, batch)
    if use_dot:
        if not dot_path_ok(w, batch):
            raise InputShapeError(f"bsr_matmul: the tl.dot path needs 16 <= bh <= 128 (power of 2) and B >= 16, "
                                  f"got block {w.block}, B={batch}")
        block_b = _pow2(batch, 16, 64)
        _bsr_matmul_dot_kernel[(rows // bh, triton.cdiv(batch, block_b))](
            w.values, w.col_idx, w.row_ptr, x2, x2.stride(0), bias if bias is not None else y, y, y.stride(0), batch,
            HAS_BIAS=bias is not None, FP16=w.values.dtype == torch.float16, BH=bh, BW=bw,
            BLOCK_B=block_b, SLOTS=_pow2(max_slots(w), 16, 64),
        )
        return y[0] if squeeze else y
    slots = max_slots(w)
    # The (BLOCK_B, ROWS, SLOTS) product tile: ~8K elements on a GPU (registers); the interpreter
    # runs programs one by one at a fixed cost each, so it gets bigger tiles and fewer programs.
    big = interpreting()
    block_b = _pow2(batch, 1, 16 if big else 8)
    tile_rows = _pow2(rows, 16, 64 if big else 32)
    tile_slots = _pow2(slots, 8, 64 if big else 32)
    grid = (triton.cdiv(rows, tile_rows), triton.cdiv(batch, block_b))
    _bsr_matmul_kernel[grid](
        w.values, w.col_idx, w.row_ptr, slots,
        x2, x2.stride(0), cols, bias if bias is not None else y, y, y.stride(0), rows, batch,
        HAS_BIAS=bias is not None, BH=bh, BW=bw, BLOCK_B=block_b, ROWS=tile_rows, SLOTS=tile_slots,
    )
    return y[0] if squeeze else y


def bsr_matmul_reference(w: BlockSparseMatrix, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Plain-torch ``x @ W.T + bias`` (float32) with the same shapes as :func:`bsr_matmul`."""
    squeeze = x.dim() == 1
    x2 = x.unsqueeze(0) if squeeze else x  # (B, cols)
    y = w.matvec(x2.float().T).T  # (B, rows)
    if bias is not None:
        y = y + bias.float()
    return y[0] if squeeze else y
