"""Block-sparse weights: the packed format the kernels consume, and magnitude pruning.

Packed format (BSR, "block compressed sparse rows"): a dense ``(rows, cols)`` matrix is cut into
``(bh, bw)`` blocks; all-zero blocks are dropped. For block-row ``r`` (output rows
``r*bh .. r*bh+bh-1``) the kept blocks are ``values[row_ptr[r]:row_ptr[r+1]]`` and their block
columns (input columns ``c*bw .. c*bw+bw-1``) are ``col_idx[row_ptr[r]:row_ptr[r+1]]``, sorted.
All arrays are contiguous; ``values`` may be float32, float16 or bfloat16 (accumulate in float32).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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


# ---- magnitude pruning ------------------------------------------------------------------------
# The WaveRNN matrices that are pruned (RTVC names); biases and the upsample network stay dense.
PRUNABLE = (
    "I.weight",
    "rnn1.weight_ih_l0",
    "rnn1.weight_hh_l0",
    "rnn2.weight_ih_l0",
    "rnn2.weight_hh_l0",
    "fc1.weight",
    "fc2.weight",
    "fc3.weight",
)


@dataclass(frozen=True)
class PruneSchedule:
    """Gradual block-sparse pruning (Kalchbrenner et al. 2018, "Efficient Neural Audio Synthesis").

    Block sparsity rises as ``target * (1 - (1 - (step - start) / (end - start)) ** 3)`` from ``start``
    to ``end``; masks are recomputed every ``every`` steps in that window (and at ``end``), and
    kept (re-applied after each optimizer step) afterwards.
    """

    target: float = 0.9  # final fraction of zero blocks in each pruned matrix, in [0, 1)
    start: int = 0  # step at which pruning begins
    end: int = 100_000  # step at which ``target`` is reached
    every: int = 500  # recompute the masks every this many steps
    block: tuple[int, int] = (16, 1)  # block shape (rows, cols), as the kernels pack them
    names: tuple[str, ...] | None = None  # matrices to prune (None: every PRUNABLE one the block tiles)

    def __post_init__(self) -> None:
        from .errors import OptionsError

        if not isinstance(self.target, (int, float)) or not 0.0 <= self.target < 1.0:
            raise OptionsError(f"target sparsity must be in [0, 1), got {self.target!r}")
        if not (isinstance(self.start, int) and isinstance(self.end, int) and 0 <= self.start < self.end):
            raise OptionsError(f"need integers 0 <= start < end, got start={self.start!r} end={self.end!r}")
        if not isinstance(self.every, int) or self.every < 1:
            raise OptionsError(f"every must be a positive integer, got {self.every!r}")
        if not (len(self.block) == 2 and all(isinstance(v, int) and v >= 1 for v in self.block)):
            raise OptionsError(f"block must be a pair of positive ints, got {self.block!r}")

    def sparsity(self, step: int) -> float:
        """Target block sparsity at ``step`` (0 before ``start``, ``target`` from ``end`` on)."""
        if step <= self.start:
            return 0.0
        if step >= self.end:
            return float(self.target)
        frac = (step - self.start) / (self.end - self.start)
        return float(self.target * (1.0 - (1.0 - frac) ** 3))

    def due(self, step: int) -> bool:
        """Whether the masks are recomputed at ``step``."""
        return self.start < step <= self.end and ((step - self.start) % self.every == 0 or step == self.end)


def _check_tiles(w: torch.Tensor, block: tuple[int, int], name: str = "matrix") -> None:
    bh, bw = block
    if w.dim() != 2 or bh < 1 or bw < 1 or w.shape[0] % bh or w.shape[1] % bw:
        raise InputShapeError(f"block {tuple(block)} does not tile {name} of shape {tuple(w.shape)}")


def block_mask(w: torch.Tensor, block: tuple[int, int], sparsity: float) -> torch.Tensor:
    """Bool mask (True = keep) zeroing exactly ``round(sparsity * n_blocks)`` whole blocks of ``w``.

    Blocks are ranked by their L1 magnitude (ties broken by position, stably); the smallest go.
    """
    _check_tiles(w, block)
    if not 0.0 <= sparsity <= 1.0:
        raise InputShapeError(f"sparsity must be in [0, 1], got {sparsity}")
    rows, cols = w.shape
    bh, bw = block
    scores = w.detach().abs().float().reshape(rows // bh, bh, cols // bw, bw).sum(dim=(1, 3))  # (nbr, nbc)
    n_drop = int(round(sparsity * scores.numel()))
    keep = torch.ones(scores.numel(), dtype=torch.bool)
    keep[torch.argsort(scores.reshape(-1), stable=True)[:n_drop]] = False
    keep = keep.reshape(scores.shape)
    return keep.repeat_interleave(bh, 0).repeat_interleave(bw, 1)  # (rows, cols)


def block_sparsity(w: torch.Tensor, block: tuple[int, int]) -> float:
    """Fraction of all-zero ``block``-shaped blocks of ``w``."""
    _check_tiles(w, block)
    rows, cols = w.shape
    bh, bw = block
    nonzero = w.detach().reshape(rows // bh, bh, cols // bw, bw).ne(0).any(dim=3).any(dim=1)
    return 1.0 - float(nonzero.float().mean())


def prune_masks(
    model: torch.nn.Module, sparsity: float, block: tuple[int, int], names: tuple[str, ...] | None = None
) -> dict[str, torch.Tensor]:
    """Masks for the named matrices of ``model`` (default: every ``PRUNABLE`` one the block tiles).

    A matrix named explicitly that the block does not tile is an InputShapeError; with the default
    names such matrices (e.g. ``I.weight`` (R, 113) with 4-wide blocks) are left dense.
    """
    params = dict(model.named_parameters())
    chosen = PRUNABLE if names is None else tuple(names)
    masks = {}
    for name in chosen:
        if name not in params:
            raise InputShapeError(f"model has no parameter {name!r} to prune")
        w = params[name]
        if names is None and (w.shape[0] % block[0] or w.shape[1] % block[1]):
            continue
        _check_tiles(w, block, name)
        masks[name] = block_mask(w, block, sparsity)
    return masks


@torch.no_grad()
def apply_masks(model: torch.nn.Module, masks: dict[str, torch.Tensor]) -> None:
    """Zero the masked-out weights in place (after every optimizer step while pruning)."""
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        params[name].mul_(mask.to(params[name].device, params[name].dtype))


def prune_model(
    model: torch.nn.Module, sparsity: float, block: tuple[int, int] = (16, 1), names: tuple[str, ...] | None = None
) -> dict[str, float]:
    """One-shot block magnitude pruning in place; returns the achieved block sparsity per matrix."""
    masks = prune_masks(model, sparsity, block, names)
    apply_masks(model, masks)
    params = dict(model.named_parameters())
    return {name: block_sparsity(params[name], block) for name in masks}


def measure_sparsity(model: torch.nn.Module, block: tuple[int, int] | None = None) -> dict[str, float]:
    """Fraction of zeros (elements, or all-zero blocks if ``block`` is given) of each ``PRUNABLE``
    matrix of ``model``, plus ``"total"`` over them all (weighted by size)."""
    params = dict(model.named_parameters())
    out: dict[str, float] = {}
    zeros = total = 0.0
    for name in PRUNABLE:
        if name not in params:
            continue
        w = params[name].detach()
        if block is None:
            out[name] = float(w.eq(0).float().mean())
        elif w.shape[0] % block[0] == 0 and w.shape[1] % block[1] == 0:
            out[name] = block_sparsity(w, block)
        else:
            continue
        zeros += out[name] * w.numel()
        total += w.numel()
    out["total"] = zeros / total if total else 0.0
    return out


def prune_checkpoint(in_path: str, out_path: str, sparsity: float, block: tuple[int, int] = (16, 1)) -> dict[str, Any]:
    """``rtclone prune``: one-shot block pruning of any vocoder checkpoint (rtclone or RTVC format).

    Writes an rtclone checkpoint and returns a report: the target, the block, the achieved block
    sparsity of each pruned matrix and overall, and the element sparsity measured after saving.
    """
    from .checkpoints import build_model, read_checkpoint, save_model
    from .errors import OptionsError

    if not isinstance(sparsity, (int, float)) or not 0.0 <= sparsity < 1.0:
        raise OptionsError(f"sparsity must be in [0, 1), got {sparsity!r}")
    block = (int(block[0]), int(block[1]))
    ckpt = read_checkpoint(in_path, expect_kind="vocoder")
    model = build_model(ckpt)
    achieved = prune_model(model, float(sparsity), block)
    meta = dict(ckpt.meta)
    meta["pruned"] = {"sparsity": float(sparsity), "block": list(block), "achieved": achieved}
    save_model(model, out_path, "vocoder", meta=meta)
    reloaded = build_model(read_checkpoint(out_path, expect_kind="vocoder"))
    return {
        "input_format": ckpt.format,
        "target_sparsity": float(sparsity),
        "block": list(block),
        "achieved": achieved,
        "block_sparsity": measure_sparsity(reloaded, block)["total"],
        "element_sparsity": measure_sparsity(reloaded)["total"],
    }
