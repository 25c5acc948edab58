"""Block-sparse weights: the packed format the kernels consume, and magnitude pruning.

Packed format (BSR, "block compressed sparse rows"): a dense ``(rows, cols)`` matrix is cut into
``(bh, bw)`` blocks; all-zero blocks are dropped. For block-row ``r`` (output rows
``r*bh .. r*bh+bh-1``) the kept blocks are ``values[row_ptr[r]:row_ptr[r+1]]`` and their block
columns (input columns ``c*bw .. c*bw+bw-1``) are ``col_idx[row_ptr[r]:row_ptr[r+1]]``, sorted.
All arrays are contiguous; ``values`` may be float32, float16 or bfloat16 (accumulate in float32).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import InputShapeError


@dataclass(frozen=True)
class BlockSparseMatrix:
    """A matrix in the packed block-sparse format (see the module docstring)."""

    shape: tuple[int, int]  # (rows, cols) of the dense matrix
    block: tuple[int, int]  # (bh, bw)
    values: torch.Tensor  # (nnzb, bh, bw) kept blocks, row-major by block-row then block-col
    col_idx: torch.Tensor  # (nnzb,) int32 block-column index of each kept block
    row_ptr: torch.Tensor  # (rows // bh + 1,) int32 offsets into values/col_idx

    @property
    def nnz_blocks(self) -> int:
        return int(self.values.shape[0])

    @property
    def density(self) -> float:
        """Fraction of blocks kept (1 - block sparsity)."""
        bh, bw = self.block
        total = (self.shape[0] // bh) * (self.shape[1] // bw)
        return self.nnz_blocks / total if total else 0.0

    @property
    def sparsity(self) -> float:
        return 1.0 - self.density

    def to_dense(self) -> torch.Tensor:
        """The dense ``(rows, cols)`` float32 matrix (dropped blocks are zero)."""
        rows, cols = self.shape
        bh, bw = self.block
        out = torch.zeros(rows // bh, cols // bw, bh, bw, dtype=torch.float32)
        counts = (self.row_ptr[1:] - self.row_ptr[:-1]).long()
        brow = torch.repeat_interleave(torch.arange(rows // bh), counts)
        out[brow, self.col_idx.long()] = self.values.float()
        return out.permute(0, 2, 1, 3).reshape(rows, cols)

    def matvec(self, x: torch.Tensor) -> torch.Tensor:
        """Reference ``W @ x`` for ``x`` of shape ``(cols,)`` or ``(cols, B)``; float32 result."""
        rows, cols = self.shape
        bh, bw = self.block
        if x.shape[0] != cols:
            raise InputShapeError(f"matvec: x has {x.shape[0]} rows, the matrix has {cols} columns")
        squeeze = x.dim() == 1
        xb = x.float().reshape(cols // bw, bw, -1)  # (nbc, bw, B)
        gathered = xb[self.col_idx.long()]  # (nnzb, bw, B)
        prod = torch.bmm(self.values.float(), gathered)  # (nnzb, bh, B)
        counts = (self.row_ptr[1:] - self.row_ptr[:-1]).long()
        brow = torch.repeat_interleave(torch.arange(rows // bh), counts)
        y = torch.zeros(rows // bh, bh, prod.shape[-1], dtype=torch.float32)
        y.index_add_(0, brow, prod)
        y = y.reshape(rows, -1)
        return y[:, 0] if squeeze else y


def pack(dense: torch.Tensor, block: tuple[int, int] = (16, 1), dtype: torch.dtype = torch.float32) -> BlockSparseMatrix:
    """Pack a dense 2-D matrix, dropping every block whose entries are all exactly zero."""
    if dense.dim() != 2:
        raise InputShapeError(f"pack: expected a 2-D matrix, got shape {tuple(dense.shape)}")
    rows, cols = dense.shape
    bh, bw = block
    if bh < 1 or bw < 1 or rows % bh or cols % bw:
        raise InputShapeError(f"pack: block {block} does not tile a {rows}x{cols} matrix")
    if dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise InputShapeError(f"pack: unsupported value dtype {dtype}")
    blocks = dense.detach().float().reshape(rows // bh, bh, cols // bw, bw).permute(0, 2, 1, 3)
    keep = blocks.ne(0).any(dim=3).any(dim=2)  # (nbr, nbc)
    brow, bcol = keep.nonzero(as_tuple=True)  # row-major order
    values = blocks[brow, bcol].to(dtype).contiguous()  # (nnzb, bh, bw)
    counts = keep.sum(dim=1)
    row_ptr = torch.zeros(rows // bh + 1, dtype=torch.int32)
    row_ptr[1:] = torch.cumsum(counts, 0).to(torch.int32)
    return BlockSparseMatrix((rows, cols), (bh, bw), values, bcol.to(torch.int32).contiguous(), row_ptr)
