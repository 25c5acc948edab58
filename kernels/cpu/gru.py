"""Single-layer GRU and LSTM training passes with each time step in C (``_gru``, kernels/cpu/gru_train.c).

``gru_layer(x, w_ih, w_hh, b_ih, b_hh)`` equals ``torch.nn.GRU(batch_first=True)(x)[0]`` from a
zero state (same gate order r, z, n; gradients for x and all four parameters). It is what
``WaveRNN.forward`` runs when the extension is built, because it is cheaper per training step than
torch's GRU (benchmarks/train_vocoder.py measures both):

- forward: the input half ``x W_ih^T + b_ih`` is one torch product for all steps; then one C call
  per step: ``gh = h W_hh^T + b_hh`` on weights packed once per pass, the gates and the new state;
- backward: one C call per step: the gate gradients, the bias-gradient sums and ``dG_h W_hh`` (the
  state gradient of the step before); the weight gradients are two whole-sequence torch products
  after the loop (torch's GRU backward takes a (3R x B) (B x R) product per step instead);
- under CPU bfloat16 autocast the products take bfloat16 operands (as torch's GRU does under
  autocast) and accumulate in float32 (AVX512-BF16 dot products where the CPU has them, else
  float32 FMA on the bfloat16 values); gates, states, gate gradients and bias sums stay float32,
  and the output is float32.

``lstm_layer(x, w_ih, w_hh, b_ih, b_hh)`` does the same for ``torch.nn.LSTM`` (gate order i, f, g,
o; the two biases enter summed, so their gradients are equal): the synthesizer's teacher-forced
decoder runs its two residual LSTMs in it (``rtclone.tacotron_layers``; benchmarks/train_synthesizer.py).

:func:`available` says whether the extension is built; ``RTCLONE_FUSED_GRU=0`` turns the GRU layer
off in the WaveRNN and ``RTCLONE_FUSED_LSTM=0`` the LSTM layer in the decoder (:func:`lstm_available`);
:func:`kernels` says which C paths run. The C products read their weights packed by :func:`_pack`
into column tiles whose rows are contiguous.
"""

from __future__ import annotations

import os
from typing import Any

import torch

ABI = 2  # what this module's calls and weight packing expect of the extension (kernels/cpu/gru_train.c)
try:
    from . import _gru  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - depends on the build
    _gru = None
if getattr(_gru, "ABI", None) != ABI:  # a stale build (e.g. an older checkout's): torch's layers instead
    _gru = None


def available() -> bool:
    """True when the C extension is built and ``RTCLONE_FUSED_GRU`` is not ``0``."""
    return _gru is not None and os.environ.get("RTCLONE_FUSED_GRU", "1") != "0"


def _mm_dtype() -> torch.dtype:
    if torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16:
        return torch.bfloat16
    return torch.float32


def kernels() -> dict[str, bool]:
    """The C paths in use: ``vectorised`` (AVX2 products and activations), ``bf16dot`` (AVX512-BF16 products)."""
    if _gru is None:
        return {"vectorised": False, "bf16dot": False}
    vec, dot = _gru.set_kernels(*_KERNELS)
    return {"vectorised": vec, "bf16dot": dot}


_KERNELS = [True, True]  # wanted: vectorised, bf16dot (tests turn them off to check the other paths)


def _pack(w_kn: torch.Tensor, md: torch.dtype) -> tuple[torch.Tensor, int]:
    """A (K, N) product operand in the layout the C products read: (packed tensor, layout id)."""
    k, n = w_kn.shape
    use = kernels()
    if md == torch.bfloat16 and use["bf16dot"] and k % 2 == 0 and n % 32 == 0:  # bfloat16 pairs in tiles (N/32, K/2, 32, 2)
        return w_kn.to(md).view(k // 2, 2, n // 32, 32).permute(2, 0, 3, 1).contiguous(), 1
    w = w_kn.to(md).float()  # float32, values rounded to md
    if use["vectorised"] and n % 16 == 0:  # column tiles (N/16, K, 16)
        return w.view(k, n // 16, 16).transpose(0, 1).contiguous(), 2
    return w.contiguous(), 0  # (K, N)


def _input_half(x: torch.Tensor, w_ih: torch.Tensor, bias: torch.Tensor, md: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """x in the mm dtype (B, T, I) and its product x W_ih^T + bias for all steps (B, T, G·R): one torch product."""
    b, t_len, n_in = x.shape
    xm = x.detach().to(md).contiguous()
    gi = torch.addmm(bias.detach().to(md), xm.view(b * t_len, n_in), w_ih.detach().to(md).t())
    return xm, gi.view(b, t_len, -1)


def _backward_buffers(dout: torch.Tensor, w_hh: torch.Tensor, md: torch.dtype, b: int, t_len: int, width: int,
                      ) -> tuple[int, int, torch.Tensor, tuple[torch.Tensor, int], torch.Tensor, torch.Tensor]:  # fmt: skip
    """What a backward pass's C loop reads and writes: the bf16 flag and element size, the output
    gradient (float32, contiguous), W_hh packed for dG W_hh, the input-half gate gradients (B, T, width)
    float32 and the recurrent-half ones (T, B, width) in the mm dtype (step-major: one contiguous
    product operand per step)."""
    bf = int(md == torch.bfloat16)
    return (bf, 2 if bf else 4, dout.float().contiguous(), _pack(w_hh.detach(), md),
            torch.empty(b, t_len, width), torch.empty(t_len, b, width, dtype=md))


def _weight_grads(dgi: torch.Tensor, dgh: torch.Tensor, out: torch.Tensor, xm: torch.Tensor, w_ih: torch.Tensor,
                  md: torch.dtype, want_dx: bool) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:  # fmt: skip
    """After the loop: dx, dW_ih and dW_hh as whole-sequence products from the input-half gate gradients
    dgi (B, T, G·R) float32, the recurrent-half ones dgh (T, B, G·R) in the mm dtype and the outputs."""
    b, t_len, r = out.shape
    hprev = torch.cat([torch.zeros(1, b, r, dtype=md), out.transpose(0, 1)[:-1].to(md)]).view(t_len * b, r)
    dgi_m = dgi.view(b * t_len, -1).to(md)
    dw_hh = torch.mm(dgh.view(t_len * b, -1).t(), hprev).float()
    dw_ih = torch.mm(dgi_m.t(), xm.view(b * t_len, -1)).float()
    dx = torch.mm(dgi_m, w_ih.detach().to(md)).float().view(b, t_len, -1) if want_dx else None
    return dx, dw_ih, dw_hh


class _GRULayer(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor, b_ih: torch.Tensor,
                b_hh: torch.Tensor, md: torch.dtype) -> torch.Tensor:  # fmt: skip
        with torch.autocast("cpu", enabled=False):
            b, t_len, _ = x.shape
            r = w_hh.shape[1]
            bf = int(md == torch.bfloat16)
            es = 2 if bf else 4
            xm, gi = _input_half(x, w_ih, b_ih, md)
            w, wkind = _pack(w_hh.detach().t(), md)
            bhh = b_hh.detach().to(md).float().contiguous()
            out = torch.empty(b, t_len, r)
            h0 = torch.zeros(b, r)
            hm = torch.zeros(b, r, dtype=md)  # the state as the next product's operand
            gates = torch.empty(t_len, b, 3 * r)
            hn = torch.empty(t_len, b, r)
            gi_p, out_p = gi.data_ptr(), out.data_ptr()
            for t in range(t_len):
                hp, hps = (h0.data_ptr(), r) if t == 0 else (out_p + (t - 1) * r * 4, t_len * r)
                _gru.fwd(gi_p + t * 3 * r * es, t_len * 3 * r, hm.data_ptr(), w.data_ptr(), wkind, bhh.data_ptr(),
                         hp, hps, out_p + t * r * 4, t_len * r, gates[t].data_ptr(), hn[t].data_ptr(), b, r, bf)
        ctx.save_for_backward(xm, w_ih, w_hh, out, gates, hn)
        ctx.md = md
        return out

    @staticmethod
    def backward(ctx: Any, dout: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        xm, w_ih, w_hh, out, gates, hn = ctx.saved_tensors
        md = ctx.md
        with torch.autocast("cpu", enabled=False):
            t_len, b, r = hn.shape
            bf, es, dout, (w, wkind), dgi, dgh = _backward_buffers(dout, w_hh, md, b, t_len, 3 * r)
            carry, h0 = torch.zeros(b, r), torch.zeros(b, r)
            db_ih, db_hh = torch.zeros(3 * r), torch.zeros(3 * r)
            out_p, dout_p, dgi_p, dgh_p = out.data_ptr(), dout.data_ptr(), dgi.data_ptr(), dgh.data_ptr()
            for t in range(t_len - 1, -1, -1):
                hp, hps = (h0.data_ptr(), r) if t == 0 else (out_p + (t - 1) * r * 4, t_len * r)
                _gru.bwd(carry.data_ptr(), dout_p + t * r * 4, t_len * r, gates[t].data_ptr(), hn[t].data_ptr(), hp, hps,
                         dgi_p + t * 3 * r * 4, t_len * 3 * r, dgh_p + t * b * 3 * r * es, w.data_ptr(), wkind,
                         db_ih.data_ptr(), db_hh.data_ptr(), b, r, bf, int(t > 0))
            dx, dw_ih, dw_hh = _weight_grads(dgi, dgh, out, xm, w_ih, md, ctx.needs_input_grad[0])
        return dx, dw_ih, dw_hh, db_ih, db_hh, None


class _LSTMLayer(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor, b_ih: torch.Tensor,
                b_hh: torch.Tensor, md: torch.dtype, zoneout: torch.Tensor | None) -> torch.Tensor:  # fmt: skip
        with torch.autocast("cpu", enabled=False):
            b, t_len, _ = x.shape
            r = w_hh.shape[1]
            bf = int(md == torch.bfloat16)
            es = 2 if bf else 4
            xm, gi = _input_half(x, w_ih, b_ih + b_hh, md)  # the two biases only ever appear summed
            w, wkind = _pack(w_hh.detach().t(), md)
            out = torch.empty(b, t_len, r)
            hm = torch.zeros(b, r, dtype=md)  # the state as the next product's operand
            cells = torch.zeros(t_len + 1, b, r)  # cells[t + 1]: the cell after step t; cells[0] = 0
            gates = torch.empty(t_len, b, 4 * r)
            gi_p, out_p = gi.data_ptr(), out.data_ptr()
            zm = None if zoneout is None else zoneout.detach().float().contiguous()  # (T, B, R)
            h0 = torch.zeros(b, r)
            for t in range(t_len):
                hp, hps = (h0.data_ptr(), r) if t == 0 else (out_p + (t - 1) * r * 4, t_len * r)
                _gru.lstm_fwd(gi_p + t * 4 * r * es, t_len * 4 * r, hm.data_ptr(), w.data_ptr(), wkind, cells[t].data_ptr(),
                              r, cells[t + 1].data_ptr(), out_p + t * r * 4, t_len * r, gates[t].data_ptr(),
                              0 if zm is None else zm[t].data_ptr(), hp, hps, b, r, bf)
        ctx.save_for_backward(xm, w_ih, w_hh, out, gates, cells, zm)
        ctx.md = md
        return out

    @staticmethod
    def backward(ctx: Any, dout: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        xm, w_ih, w_hh, out, gates, cells, zm = ctx.saved_tensors
        md = ctx.md
        with torch.autocast("cpu", enabled=False):
            t_len, b, r4 = gates.shape
            r = r4 // 4
            bf, es, dout, (w, wkind), dg, dgh = _backward_buffers(dout, w_hh, md, b, t_len, r4)
            carry_h, carry_c = torch.zeros(b, r), torch.zeros(b, r)
            db = torch.zeros(4 * r)
            dout_p, dg_p, dgh_p = dout.data_ptr(), dg.data_ptr(), dgh.data_ptr()
            for t in range(t_len - 1, -1, -1):
                _gru.lstm_bwd(carry_h.data_ptr(), carry_c.data_ptr(), dout_p + t * r * 4, t_len * r, gates[t].data_ptr(),
                               cells[t + 1].data_ptr(), cells[t].data_ptr(), r, dg_p + t * 4 * r * 4, t_len * 4 * r,
                              dgh_p + t * b * 4 * r * es, w.data_ptr(), wkind, db.data_ptr(),
                              0 if zm is None else zm[t].data_ptr(), b, r, bf, int(t > 0))
            dx, dw_ih, dw_hh = _weight_grads(dg, dgh, out, xm, w_ih, md, ctx.needs_input_grad[0])
        return dx, dw_ih, dw_hh, db, db.clone(), None, None


def lstm_available() -> bool:
    """True when the C extension has the LSTM steps and ``RTCLONE_FUSED_LSTM`` is not ``0``."""
    return _gru is not None and hasattr(_gru, "lstm_fwd") and os.environ.get("RTCLONE_FUSED_LSTM", "1") != "0"


def _layer(fn: Any, name: str, gates: int, x: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor, b_ih: torch.Tensor,
           b_hh: torch.Tensor, *extra: Any) -> torch.Tensor:  # fmt: skip
    """Checks shared by the two layers, then ``fn.apply``."""
    if _gru is None or not hasattr(_gru, "lstm_fwd" if gates == 4 else "fwd"):
        raise RuntimeError("rtclone.kernels.cpu._gru is not built (pip install -e . builds it)")
    if x.dim() != 3 or x.device.type != "cpu" or w_hh.shape[0] != gates * w_hh.shape[1] or w_ih.shape != (w_hh.shape[0], x.shape[2]):
        raise ValueError(f"{name}: bad shapes x {tuple(x.shape)}, w_ih {tuple(w_ih.shape)}, w_hh {tuple(w_hh.shape)}")
    if x.dtype not in (torch.float32, torch.bfloat16) or any(p.dtype != torch.float32 for p in (w_ih, w_hh, b_ih, b_hh)):
        raise ValueError(f"{name}: float32 weights and a float32 or bfloat16 input, got x {x.dtype}, w_hh {w_hh.dtype}")
    if x.shape[1] == 0:
        return x.new_zeros(x.shape[0], 0, w_hh.shape[1], dtype=torch.float32)
    return fn.apply(x, w_ih, w_hh, b_ih, b_hh, _mm_dtype(), *extra)


def lstm_layer(x: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor, b_ih: torch.Tensor, b_hh: torch.Tensor,
               zoneout: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
    """(B, T, I) -> (B, T, R) float32 outputs of an LSTM layer from a zero state: equal to
    ``torch.nn.LSTM(batch_first=True)(x)[0]`` with these weights (gate order i, f, g, o; gradients
    for x and all four parameters). Each time step is one C call, as in :func:`gru_layer`.

    ``zoneout`` (T, B, R) of 0/1 (RTVC's decoder LSTMs in training): where it is 1 the state keeps its
    previous value (the cell updates regardless); the output is the state kept."""
    if zoneout is not None and (zoneout.shape != (x.shape[1], x.shape[0], w_hh.shape[1]) or zoneout.requires_grad):
        raise ValueError(f"lstm_layer: zoneout must be a (T, B, R) mask without gradient, got {tuple(zoneout.shape)}")
    return _layer(_LSTMLayer, "lstm_layer", 4, x, w_ih, w_hh, b_ih, b_hh, zoneout)


def gru_layer(x: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor, b_ih: torch.Tensor, b_hh: torch.Tensor) -> torch.Tensor:
    """(B, T, I) -> (B, T, R) float32 outputs of a GRU layer from a zero state (see the module doc)."""
    return _layer(_GRULayer, "gru_layer", 3, x, w_ih, w_hh, b_ih, b_hh)
