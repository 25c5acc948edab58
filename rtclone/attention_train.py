"""The decoder's attention path over a whole teacher-forced sequence, with a hand-written backward.

In a training pass the attention path (attention GRU cell → location-sensitive attention →
context, :meth:`rtclone.tacotron_layers.Decoder.attend`) is the one part that must run step by step;
under autograd each step is ≈ 15 small operations forward and more backward, each recorded and
replayed, plus per-step weight-gradient products. :class:`AttentionLoop` runs the same sums with
autograd off: the prenet's share of the GRU input is one product for all steps, the location
convolution and its projection are one convolution (``L · conv`` folded), the backward walks the
steps once carrying the state gradients, and the weight gradients are whole-sequence products at
the end (the score vector's: one small product per step, over the per-step tanh outputs it keeps). Its inputs are the prenet outputs of every step (the caller draws their dropout masks
in the step loop's order) and a zero initial state (as :meth:`Decoder.init_state` gives).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["AttentionLoop", "attention_loop"]


class AttentionLoop(torch.autograd.Function):
    """pre (S, B, P), memory (B, T, C), keys (B, T, A), mask (B, T) bool or None, the attention GRU's
    weights (w_ih (3D, C + P) over [context, prenet], w_hh (3D, D), b_ih, b_hh) and the LSA's (query
    projection w_q (A, D), b_q (A); location conv conv_w (F, 1, K), conv_b (F); its projection
    loc_w (A, F); the score vector v (1, A)) → hidden (S, B, D), contexts (S, B, C), scores (S, B, T)."""

    @staticmethod
    def forward(ctx: Any, pre: torch.Tensor, memory: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor | None,
                w_ih: torch.Tensor, w_hh: torch.Tensor, b_ih: torch.Tensor, b_hh: torch.Tensor,
                w_q: torch.Tensor, b_q: torch.Tensor, conv_w: torch.Tensor, conv_b: torch.Tensor,
                loc_w: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
        S, B, _ = pre.shape
        T, C, A = memory.shape[1], memory.shape[2], keys.shape[2]
        D, K = w_hh.shape[1], conv_w.shape[2]
        w_ctx_t = w_ih[:, :C].t()
        w_hh_t, w_q_t = w_hh.t(), w_q.t()
        gi_pre = torch.addmm(b_ih, pre.reshape(S * B, -1), w_ih[:, C:].t()).view(S, B, 3 * D)
        w_loc = loc_w @ conv_w.view(conv_w.shape[0], K)  # (A, K): the projection folded into the conv
        w_loc_t = w_loc.t().contiguous()
        base = (keys + loc_w @ conv_b).reshape(B * T, A)  # keys plus the folded conv's bias
        padded = pre.new_zeros(B, T + K - 1)  # the cumulative weights, zero-padded for the conv
        vec = v.reshape(-1)
        h, context = pre.new_zeros(B, D), pre.new_zeros(B, C)
        hidden, contexts, scores, gates, tanhs, windows = [], [], [], [], [], []
        for s in range(S):
            gi = torch.addmm(gi_pre[s], context, w_ctx_t)
            gh = torch.addmm(b_hh, h, w_hh_t)
            rz = torch.sigmoid(gi[:, : 2 * D] + gh[:, : 2 * D])
            r, z = rz[:, :D], rz[:, D:]
            ghn = gh[:, 2 * D :]
            n = torch.tanh(torch.addcmul(gi[:, 2 * D :], r, ghn))
            gates.append((r, z, n, ghn))
            h = torch.addcmul(n, z, h - n)
            hidden.append(h)
            q = torch.addmm(b_q, h, w_q_t)
            win = padded.unfold(1, K, 1).contiguous().view(B * T, K)  # each position's window (a copy)
            windows.append(win)
            u = torch.addmm(base, win, w_loc_t).view(B, T, A)
            u.add_(q.unsqueeze(1)).tanh_()
            tanhs.append(u)
            e = u @ vec
            if mask is not None:
                e = e.masked_fill(~mask, float("-inf"))
            a = torch.softmax(e, dim=1)
            scores.append(a)
            context = torch.bmm(a.unsqueeze(1), memory).squeeze(1)
            contexts.append(context)
            padded[:, K // 2 : K // 2 + T] += a
        hidden_t, contexts_t, scores_t = torch.stack(hidden), torch.stack(contexts), torch.stack(scores)
        ctx.save_for_backward(pre, memory, w_ih, w_hh, w_q, conv_w, conv_b, loc_w, v, hidden_t, contexts_t, scores_t)
        ctx.steps = (gates, tanhs, windows, w_loc)
        return hidden_t, contexts_t, scores_t

    @staticmethod
    def backward(ctx: Any, d_hidden: torch.Tensor | None, d_contexts: torch.Tensor | None,
                 d_scores: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:  # fmt: skip
        pre, memory, w_ih, w_hh, w_q, conv_w, conv_b, loc_w, v, hidden, contexts, scores = ctx.saved_tensors
        gates, tanhs, windows, w_loc = ctx.steps
        S, B, _ = pre.shape
        T, C = memory.shape[1], memory.shape[2]
        D, K, A = w_hh.shape[1], conv_w.shape[2], v.shape[-1]
        w_ctx = w_ih[:, :C]
        vec = v.reshape(-1)
        d_gi, d_gh = pre.new_empty(S, B, 3 * D), pre.new_empty(S, B, 3 * D)
        d_q, d_e = pre.new_empty(S, B, A), pre.new_empty(S, B, T)
        d_u = pre.new_empty(S, B * T, A)  # gradient at tanh's input
        d_ctx_all = pre.new_empty(S, B, C)
        dh, dctx, dcum = pre.new_zeros(B, D), pre.new_zeros(B, C), pre.new_zeros(B, T)
        for s in range(S - 1, -1, -1):
            if d_contexts is not None:
                dctx = dctx + d_contexts[s]
            d_ctx_all[s] = dctx
            a = scores[s]
            da = torch.baddbmm(dcum.unsqueeze(2), memory, dctx.unsqueeze(2)).squeeze(2)
            if d_scores is not None:
                da = da + d_scores[s]
            de = a * (da - (a * da).sum(1, keepdim=True))
            d_e[s] = de
            u = tanhs[s]
            g = d_u[s].view(B, T, A)
            torch.mul(u, u, out=g)
            g.sub_(1.0).mul_(vec).mul_(de.unsqueeze(2).neg())  # de · v · (1 − u²)
            dq = g.sum(1)
            d_q[s] = dq
            # cum_s = cum_{s-1} + a_s, and cum_{s-1} feeds this step's location convolution (its transpose: fold)
            cols = (d_u[s] @ w_loc).view(B, T, K).transpose(1, 2)  # (B, K, T)
            dcum = dcum + F.fold(cols, (1, T + K - 1), (1, K)).view(B, T + K - 1)[:, K // 2 : K // 2 + T]
            dh = dh + dq @ w_q
            if d_hidden is not None:
                dh = dh + d_hidden[s]
            r, z, n, ghn = gates[s]
            h_prev = hidden[s - 1] if s > 0 else torch.zeros_like(dh)
            dn = dh * (1.0 - z) * (1.0 - n * n)
            dz = dh * (h_prev - n) * z * (1.0 - z)
            dr = dn * ghn * r * (1.0 - r)
            d_gi[s, :, :D], d_gi[s, :, D : 2 * D], d_gi[s, :, 2 * D :] = dr, dz, dn
            d_gh[s, :, :D], d_gh[s, :, D : 2 * D], d_gh[s, :, 2 * D :] = dr, dz, dn * r
            dh = dh * z + d_gh[s] @ w_hh
            dctx = d_gi[s] @ w_ctx
        # weight gradients: one product over all steps each
        flat = lambda x: x.reshape(S * B, -1)  # noqa: E731
        h_prev_all = torch.cat([hidden.new_zeros(1, B, D), hidden[:-1]])
        ctx_prev_all = torch.cat([contexts.new_zeros(1, B, C), contexts[:-1]])
        d_w_ih = torch.cat([flat(d_gi).t() @ flat(ctx_prev_all), flat(d_gi).t() @ flat(pre)], dim=1)
        d_w_hh = flat(d_gh).t() @ flat(h_prev_all)
        d_pre = (flat(d_gi) @ w_ih[:, C:]).view_as(pre)
        d_w_q = flat(d_q).t() @ flat(hidden)
        d_v = sum((d_e[s].reshape(-1) @ tanhs[s].reshape(-1, A)) for s in range(S)).view_as(v)
        d_u_all = d_u.view(S * B * T, A)
        d_keys = d_u.view(S, B, T, A).sum(0)
        d_memory = torch.bmm(scores.permute(1, 2, 0), d_ctx_all.transpose(0, 1))  # (B, T, C)
        d_w_loc = d_u_all.t() @ torch.cat(windows)  # (A, K)
        d_b_loc = d_u_all.sum(0)
        F_ = conv_w.shape[0]
        d_loc_w = d_w_loc @ conv_w.view(F_, K).t() + d_b_loc.unsqueeze(1) * conv_b.unsqueeze(0)
        d_conv_w = (loc_w.t() @ d_w_loc).view_as(conv_w)
        d_conv_b = loc_w.t() @ d_b_loc
        ctx.steps = None
        return (d_pre, d_memory, d_keys, None, d_w_ih, d_w_hh, flat(d_gi).sum(0), flat(d_gh).sum(0),
                d_w_q, flat(d_q).sum(0), d_conv_w, d_conv_b, d_loc_w, d_v)  # fmt: skip


def attention_loop(decoder: Any, pre: torch.Tensor, memory: torch.Tensor, keys: torch.Tensor,
                   mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """:class:`AttentionLoop` with ``decoder``'s attention GRU and LSA weights (a zero initial state)."""
    gru, lsa = decoder.attn_rnn, decoder.attn_net
    return AttentionLoop.apply(pre, memory, keys, mask, gru.weight_ih, gru.weight_hh, gru.bias_ih, gru.bias_hh,
                               lsa.W.weight, lsa.W.bias, lsa.conv.weight, lsa.conv.bias, lsa.L.weight, lsa.v.weight)  # fmt: skip
