"""Building blocks of the Tacotron synthesizer (parameter names follow RTVC's ``synthesizer.pt``).

Text encoder (embedding → prenet → CBHG), location-sensitive attention, the decoder step
(prenet → attention GRU → attention → two residual LSTMs → r mel frames + stop logit) and the
CBHG used as postnet. The decoder is written as a pure step function: its recurrent state goes
in and out explicitly as a :class:`DecoderState`, so offline and streaming decoding share it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .attention_train import attention_loop as _attention_loop
from .kernels.cpu import gru as _fused


def dropout_always(x: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Dropout that is applied in training *and* inference (Tacotron's prenet; the RTVC trap).

    With a ``generator`` the mask is drawn from it, so inference is reproducible per seed.
    """
    if p <= 0.0:
        return x
    if generator is None:
        return F.dropout(x, p, training=True)
    return _dropped(x, _keep_mask(x.shape, p, generator, x), p)


def _keep_mask(shape: torch.Size | tuple[int, ...], p: float, generator: torch.Generator | None, like: torch.Tensor) -> torch.Tensor:
    """A dropout keep mask (1 = kept, probability 1 − p) of ``shape``, ``like``'s dtype and device."""
    return like.new_empty(shape).bernoulli_(1.0 - p, generator=generator)


def _dropped(x: torch.Tensor, keep: torch.Tensor, p: float) -> torch.Tensor:
    return x * keep * (1.0 / (1.0 - p))


class PreNet(nn.Module):
    """Two ReLU layers, each followed by dropout that stays on at inference."""

    def __init__(self, in_dims: int, fc1_dims: int, fc2_dims: int, dropout: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_dims, fc1_dims)
        self.fc2 = nn.Linear(fc1_dims, fc2_dims)
        self.p = dropout

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        x = dropout_always(F.relu(self.fc1(x)), self.p, generator)
        return dropout_always(F.relu(self.fc2(x)), self.p, generator)


class HighwayNetwork(nn.Module):
    """y = g·relu(W1 x) + (1 − g)·x with the gate g = sigmoid(W2 x)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.W1 = nn.Linear(size, size)
        self.W2 = nn.Linear(size, size)
        nn.init.zeros_(self.W2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = torch.sigmoid(self.W2(x))
        return g * F.relu(self.W1(x)) + (1.0 - g) * x


class BatchNormConv(nn.Module):
    """Conv1d (no bias, 'same' padding k//2) → optional ReLU → BatchNorm1d."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, relu: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel, stride=1, padding=kernel // 2, bias=False)
        self.bnorm = nn.BatchNorm1d(out_channels)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T) -> (B, C', T or T+1)
        x = self.conv(x)
        return self.bnorm(F.relu(x) if self.relu else x)


class CBHG(nn.Module):
    """Conv bank (kernels 1..K) → max-pool → 2 projections + residual → highways → bi-GRU.

    Output width is ``channels`` (a bidirectional GRU of ``channels // 2`` per direction).
    """

    def __init__(self, K: int, in_channels: int, channels: int, proj_channels: tuple[int, int], num_highways: int) -> None:
        super().__init__()
        self.conv1d_bank = nn.ModuleList([BatchNormConv(in_channels, channels, k) for k in range(1, K + 1)])
        self.maxpool = nn.MaxPool1d(kernel_size=2, stride=1, padding=1)
        self.conv_project1 = BatchNormConv(K * channels, proj_channels[0], 3)
        self.conv_project2 = BatchNormConv(proj_channels[0], proj_channels[1], 3, relu=False)
        # a projection to the highway width when the residual has another width (the postnet)
        self.pre_highway = nn.Linear(proj_channels[-1], channels, bias=False) if proj_channels[-1] != channels else None
        self.highways = nn.ModuleList([HighwayNetwork(channels) for _ in range(num_highways)])
        self.rnn = nn.GRU(channels, channels // 2, batch_first=True, bidirectional=True)

    # Frames of context each output frame sees through the convolutions (left, right); the GRU
    # sees the whole sequence.
    @staticmethod
    def conv_receptive_field(K: int) -> tuple[int, int]:
        left = K // 2 + 1 + 1 + 1  # bank, max-pool (looks one back), two 3-tap projections
        right = (K - 1) // 2 + 1 + 1
        return left, right

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, T) -> (B, T, channels)
        residual = x
        T = x.size(-1)
        bank = torch.cat([conv(x)[:, :, :T] for conv in self.conv1d_bank], dim=1)  # (B, K·C, T)
        x = self.maxpool(bank)[:, :, :T]
        x = self.conv_project2(self.conv_project1(x)) + residual  # (B, C_in, T)
        x = x.transpose(1, 2)  # (B, T, C_in)
        if self.pre_highway is not None:
            x = self.pre_highway(x)
        for highway in self.highways:
            x = highway(x)
        self.rnn.flatten_parameters()
        x, _ = self.rnn(x)  # (B, T, channels)
        return x


class Encoder(nn.Module):
    """Characters → embedding → prenet → CBHG; the speaker embedding is concatenated per step."""

    def __init__(self, num_chars: int, embed_dims: int, encoder_dims: int, K: int, num_highways: int, dropout: float) -> None:
        super().__init__()
        self.embedding = nn.Embedding(num_chars, embed_dims)
        self.pre_net = PreNet(embed_dims, encoder_dims, encoder_dims, dropout)
        self.cbhg = CBHG(K, encoder_dims, encoder_dims, (encoder_dims, encoder_dims), num_highways)

    def forward(self, chars: torch.Tensor, speaker: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        x = self.pre_net(self.embedding(chars), generator)  # (B, T_text, encoder_dims)
        x = self.cbhg(x.transpose(1, 2))  # (B, T_text, encoder_dims)
        spk = speaker.unsqueeze(1).expand(-1, x.size(1), -1)  # (B, T_text, spk)
        return torch.cat([x, spk], dim=2)  # (B, T_text, encoder_dims + spk)


class LSA(nn.Module):
    """Location-sensitive attention: scores from the query, the keys and the cumulative weights."""

    def __init__(self, attn_dims: int, kernel_size: int = 31, filters: int = 32) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, filters, kernel_size, padding=kernel_size // 2, bias=True)
        self.L = nn.Linear(filters, attn_dims, bias=False)
        self.W = nn.Linear(attn_dims, attn_dims, bias=True)
        self.v = nn.Linear(attn_dims, 1, bias=False)

    def forward(self, keys: torch.Tensor, query: torch.Tensor, cumulative: torch.Tensor,
                mask: torch.Tensor | None) -> torch.Tensor:
        """keys (B, T_text, A), query (B, A), cumulative (B, T_text), mask (B, T_text) bool → (B, T_text)."""
        loc = self.L(self.conv(cumulative.unsqueeze(1)).transpose(1, 2))  # (B, T_text, A)
        u = self.v(torch.tanh(self.W(query).unsqueeze(1) + keys + loc)).squeeze(-1)  # (B, T_text)
        if mask is not None:
            u = u.masked_fill(~mask, float("-inf"))
        return torch.softmax(u, dim=1)


@dataclass
class DecoderState:
    """The decoder's recurrent state between steps (all tensors batch-first)."""

    attn_hidden: torch.Tensor  # (B, decoder_dims)
    rnn1: tuple[torch.Tensor, torch.Tensor]  # (h, c), each (B, lstm_dims)
    rnn2: tuple[torch.Tensor, torch.Tensor]
    context: torch.Tensor  # (B, encoder_dims + spk)
    cumulative: torch.Tensor  # (B, T_text) sum of past attention weights
    prev_frame: torch.Tensor  # (B, n_mels) the last frame of the previous step (go frame: zeros)


def _fused_lstm_ready(x: torch.Tensor) -> bool:
    """Whether a pass over ``x`` may use rtclone.kernels.cpu.gru.lstm_layer: built, gradients wanted
    (it is a cheaper training step; inference keeps torch's), on the CPU, float32."""
    return torch.is_grad_enabled() and _fused.lstm_available() and x.device.type == "cpu" and x.dtype == torch.float32


def _fused_lstm_usable(x: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor, params: list[torch.Tensor]) -> bool:
    """:func:`_fused_lstm_ready`, float32 weights and a zero initial state (as training's)."""
    return (_fused_lstm_ready(x) and all(p.dtype == torch.float32 for p in params)
            and not bool(h0.any()) and not bool(c0.any()))


class Decoder(nn.Module):
    """One Tacotron decoder step: r mel frames (of ``max_r`` projected) and a stop logit.

    Training-only settings (not saved): ``lstm_bf16``: teacher-forced training passes give the
    residual LSTMs' products bfloat16 operands (float32 accumulation, states and gates;
    :func:`rtclone.kernels.cpu.gru.lstm_layer`); ``zoneout``: in training mode each residual LSTM's
    state unit keeps its previous value with this probability at every step (RTVC's decoder uses 0.1;
    the cell updates regardless), masks drawn from the pass's generator."""

    lstm_bf16 = False
    zoneout = 0.0

    def zoning(self) -> bool:
        """Whether this pass zones out (training mode, ``zoneout`` > 0)."""
        return self.training and self.zoneout > 0.0

    def can_split(self, memory: torch.Tensor) -> bool:
        """Whether :meth:`teacher_forced` can run this pass: zoneout needs the C LSTM layer (torch's
        whole-sequence LSTM has no per-step state mixing); otherwise the step loop does it."""
        return not self.zoning() or _fused_lstm_ready(memory)

    def _zone_mask(self, h: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return (torch.rand(h.shape, generator=generator, device=h.device) < self.zoneout).to(h.dtype)

    def __init__(self, n_mels: int, encoder_dims: int, decoder_dims: int, prenet_dims: int, lstm_dims: int,
                 dropout: float, speaker_dims: int, max_r: int, attn_filters: int = 32, attn_kernel: int = 31) -> None:
        super().__init__()
        self.register_buffer("r", torch.tensor(1, dtype=torch.int))
        self.n_mels = n_mels
        self.max_r = max_r
        ctx = encoder_dims + speaker_dims
        self.prenet = PreNet(n_mels, prenet_dims, prenet_dims, dropout)
        self.attn_net = LSA(decoder_dims, attn_kernel, attn_filters)
        self.attn_rnn = nn.GRUCell(ctx + prenet_dims, decoder_dims)
        self.rnn_input = nn.Linear(ctx + decoder_dims, lstm_dims)
        self.res_rnn1 = nn.LSTMCell(lstm_dims, lstm_dims)
        self.res_rnn2 = nn.LSTMCell(lstm_dims, lstm_dims)
        self.mel_proj = nn.Linear(lstm_dims, n_mels * max_r, bias=False)
        self.stop_proj = nn.Linear(lstm_dims + ctx, 1)

    def init_state(self, memory: torch.Tensor) -> DecoderState:
        """Zero state for a memory (encoder output) of shape (B, T_text, ctx)."""
        B, T, C = memory.shape
        z = memory.new_zeros
        lstm = self.res_rnn1.hidden_size
        return DecoderState(
            attn_hidden=z(B, self.attn_rnn.hidden_size),
            rnn1=(z(B, lstm), z(B, lstm)),
            rnn2=(z(B, lstm), z(B, lstm)),
            context=z(B, C),
            cumulative=z(B, T),
            prev_frame=z(B, self.n_mels),
        )

    def mel_weight(self, r: int) -> torch.Tensor | None:
        """The rows of ``mel_proj`` that produce the first r of max_r frames: (n_mels·r, lstm).

        None when ``mel_proj`` is not a plain Linear (e.g. int8 dynamically quantized)."""
        if not isinstance(self.mel_proj, nn.Linear):
            return None
        w = self.mel_proj.weight.view(self.n_mels, self.max_r, -1)[:, :r]
        return w.reshape(self.n_mels * r, -1)

    def attend(self, prev_frame: torch.Tensor, attn_hidden: torch.Tensor, context: torch.Tensor, cumulative: torch.Tensor,
               memory: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor | None, generator: torch.Generator | None,
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
        """The attention path of one step (it never reads the residual LSTMs): prenet of the previous
        frame, attention GRU, location-sensitive attention -> new attention hidden (B, decoder_dims),
        scores (B, T_text) and context (B, ctx)."""
        pre = self.prenet(prev_frame, generator)  # (B, prenet_dims)
        attn_hidden = self.attn_rnn(torch.cat([context, pre], dim=1), attn_hidden)
        scores = self.attn_net(keys, attn_hidden, cumulative, mask)  # (B, T_text)
        return attn_hidden, scores, torch.bmm(scores.unsqueeze(1), memory).squeeze(1)

    def teacher_forced(self, state: DecoderState, memory: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor | None,
                       mels: torch.Tensor, r: int, generator: torch.Generator | None, mel_weight: torch.Tensor,
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
        """The teacher-forced decoder: the same sums as :meth:`step` over every step, reordered.

        The attention path (:meth:`attend`) never reads the residual LSTMs, so with the previous
        frames known it runs first, step by step (in a training pass: rtclone.attention_train's loop, with
        the prenet of all steps in two products and a hand-written backward); the LSTMs and projections then run
        over the whole sequence at once (one input GEMM for all steps, the recurrence in one call: the
        C layer :func:`rtclone.kernels.cpu.gru.lstm_layer` when gradients are wanted and it is built,
        else ``torch.lstm``) instead of one cell call per step. Random draws (prenet dropout, zoneout
        masks) happen in the same order as in the step loop. mels (B, n_mels, T) -> decoder mels (B, n_mels, T),
        attention (B, steps, T_text), stop logits (B, T).
        """
        B, T = mels.size(0), mels.size(2)
        zones: tuple[list[torch.Tensor], list[torch.Tensor]] = ([], [])
        if self._attention_loop_usable(state, memory):
            S = -(-T // r)
            prevs = torch.cat([state.prev_frame.unsqueeze(0), mels[:, :, r - 1 : (S - 1) * r : r].permute(2, 0, 1)])
            pre = self._prenet_all(prevs, generator, state, zones)  # (S, B, prenet)
            hidden_s, contexts_s, attns_s = _attention_loop(self, pre, memory, keys, mask)
            ctx, hidden, attn = contexts_s.transpose(0, 1), hidden_s.transpose(0, 1), attns_s.transpose(0, 1)
        else:
            hiddens, contexts, attns = [], [], []
            attn_hidden, context, cumulative, prev = state.attn_hidden, state.context, state.cumulative, state.prev_frame
            for t in range(0, T, r):
                if t > 0:
                    prev = mels[:, :, t - 1]
                attn_hidden, scores, context = self.attend(prev, attn_hidden, context, cumulative, memory, keys, mask, generator)
                if self.zoning():  # drawn where the step loop draws them
                    self._draw_zones(state, generator, zones)
                cumulative = cumulative + scores
                hiddens.append(attn_hidden)
                contexts.append(context)
                attns.append(scores)
            ctx, hidden, attn = torch.stack(contexts, dim=1), torch.stack(hiddens, dim=1), torch.stack(attns, dim=1)
        x = self.rnn_input(torch.cat([ctx, hidden], dim=2))  # (B, S, lstm)
        for cell, (h0, c0), zone in ((self.res_rnn1, state.rnn1, zones[0]), (self.res_rnn2, state.rnn2, zones[1])):
            params = [cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh]
            if _fused_lstm_usable(x, h0, c0, params):
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.lstm_bf16 or torch.is_autocast_enabled("cpu")):
                    out = _fused.lstm_layer(x, *params, zoneout=torch.stack(zone) if zone else None)
            elif zone:
                raise RuntimeError("zoneout in a teacher-forced pass needs the C LSTM layer (Tacotron.forward falls back "
                                   "to the step loop without it)")
            else:
                out, _, _ = torch.lstm(x, (h0.unsqueeze(0), c0.unsqueeze(0)), params, True, 1, 0.0, self.training, False, True)
            x = x + out
        S = x.size(1)
        mel_out = F.linear(x, mel_weight).view(B, S, self.n_mels, r).permute(0, 2, 1, 3).reshape(B, self.n_mels, S * r)
        stop = self.stop_proj(torch.cat([x, ctx], dim=2)).squeeze(2)  # (B, S)
        stop = stop.unsqueeze(2).expand(-1, -1, r).reshape(B, S * r)
        return mel_out[:, :, :T], attn, stop[:, :T]

    def _attention_loop_usable(self, state: DecoderState, memory: torch.Tensor) -> bool:
        """Whether a teacher-forced pass may run its attention path in rtclone.attention_train (a
        training pass: gradients wanted; plain GRU cell and LSA layers; odd location kernel; zero
        initial state). ``RTCLONE_FUSED_ATTENTION=0`` turns it off."""
        return (torch.is_grad_enabled() and os.environ.get("RTCLONE_FUSED_ATTENTION", "1") != "0"
                and isinstance(self.attn_rnn, nn.GRUCell) and isinstance(self.attn_net.W, nn.Linear)
                and isinstance(self.prenet.fc1, nn.Linear) and self.attn_net.conv.kernel_size[0] % 2 == 1
                and not any(bool(t.any()) for t in (state.attn_hidden, state.context, state.cumulative, state.prev_frame)))

    def _prenet_all(self, prevs: torch.Tensor, generator: torch.Generator | None, state: DecoderState,
                    zones: tuple[list[torch.Tensor], list[torch.Tensor]]) -> torch.Tensor:
        """The prenet of every step's fed frame, prevs (S, B, n_mels) → (S, B, prenet), in two products;
        with a ``generator`` its dropout masks (and the zoneout masks, into ``zones``) are drawn step by
        step in the step loop's order, so the pass equals the step loop's."""
        fc1, fc2, p = self.prenet.fc1, self.prenet.fc2, self.prenet.p
        S, B = prevs.shape[:2]
        x = F.relu(fc1(prevs))
        if generator is None:  # the global RNG: the same distribution, drawn in whole-sequence tensors
            x = dropout_always(F.relu(fc2(dropout_always(x, p))), p)
            for _ in range(S if self.zoning() else 0):
                self._draw_zones(state, generator, zones)
            return x
        keep1, keep2 = [], []
        for _ in range(S):  # dropout_always's draws, step by step
            if p > 0.0:
                keep1.append(_keep_mask((B, fc1.out_features), p, generator, x))
                keep2.append(_keep_mask((B, fc2.out_features), p, generator, x))
            if self.zoning():
                self._draw_zones(state, generator, zones)
        if p <= 0.0:
            return F.relu(fc2(x))
        return _dropped(F.relu(fc2(_dropped(x, torch.stack(keep1), p))), torch.stack(keep2), p)

    def _draw_zones(self, state: DecoderState, generator: torch.Generator | None,
                    zones: tuple[list[torch.Tensor], list[torch.Tensor]]) -> None:
        """One step's zoneout masks of the two residual LSTMs, appended to ``zones``."""
        zones[0].append(self._zone_mask(state.rnn1[0], generator))
        zones[1].append(self._zone_mask(state.rnn2[0], generator))

    def step(self, state: DecoderState, memory: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor | None,
             r: int, generator: torch.Generator | None = None, mel_weight: torch.Tensor | None = None,
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, DecoderState]:
        """Advance one step.

        memory (B, T_text, ctx) encoder output with speaker; keys (B, T_text, A) its projection;
        returns mels (B, n_mels, r), stop logit (B,), attention (B, T_text) and the new state.
        """
        B = memory.size(0)
        attn_hidden, scores, context = self.attend(state.prev_frame, state.attn_hidden, state.context, state.cumulative,
                                                   memory, keys, mask, generator)  # fmt: skip
        x = self.rnn_input(torch.cat([context, attn_hidden], dim=1))  # (B, lstm)
        zones = (self._zone_mask(state.rnn1[0], generator), self._zone_mask(state.rnn2[0], generator)) if self.zoning() else None
        h1, c1 = self.res_rnn1(x, state.rnn1)
        if zones is not None:  # zoneout: the previous state where the mask is 1
            h1 = h1 + zones[0] * (state.rnn1[0] - h1)
        x = x + h1
        h2, c2 = self.res_rnn2(x, state.rnn2)
        if zones is not None:
            h2 = h2 + zones[1] * (state.rnn2[0] - h2)
        x = x + h2
        if mel_weight is None:
            mel_weight = self.mel_weight(r)
        if mel_weight is None:  # a quantized projection: all max_r frames, keep the first r
            mels = self.mel_proj(x).view(B, self.n_mels, self.max_r)[:, :, :r]
        else:
            mels = F.linear(x, mel_weight).view(B, self.n_mels, r)  # (B, n_mels, r)
        stop = self.stop_proj(torch.cat([x, context], dim=1)).squeeze(1)  # (B,)
        new = DecoderState(attn_hidden, (h1, c1), (h2, c2), context, state.cumulative + scores, mels[:, :, -1])
        return mels, stop, scores, new
