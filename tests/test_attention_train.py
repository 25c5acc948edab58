"""rtclone.attention_train: the teacher-forced attention path with a hand-written backward equals the
decoder's own layers under autograd (values and every gradient), and the decoder uses it only where it may."""

from __future__ import annotations

import pytest
import torch

from rtclone.attention_train import attention_loop
from rtclone.synthesizer import SynthesizerDims, Tacotron

pytestmark = pytest.mark.usefixtures("one_thread")


def _reference(dec, pre, memory, keys, mask):
    """The attention path as Decoder.attend runs it, step by step under autograd."""
    S, B, T, C = pre.shape[0], memory.shape[0], memory.shape[1], memory.shape[2]
    h, ctx, cum = memory.new_zeros(B, dec.attn_rnn.hidden_size), memory.new_zeros(B, C), memory.new_zeros(B, T)
    hidden, contexts, scores = [], [], []
    for s in range(S):
        h = dec.attn_rnn(torch.cat([ctx, pre[s]], 1), h)
        a = dec.attn_net(keys, h, cum, mask)
        ctx = torch.bmm(a.unsqueeze(1), memory).squeeze(1)
        cum = cum + a
        hidden.append(h)
        contexts.append(ctx)
        scores.append(a)
    return torch.stack(hidden), torch.stack(contexts), torch.stack(scores)


@pytest.mark.parametrize("B,T,S,masked", [(3, 9, 7, True), (1, 5, 4, False), (2, 1, 3, False)])
@pytest.mark.parametrize("used", ["all", "scores"])
def test_values_and_gradients_equal_autograd(B, T, S, masked, used):
    torch.manual_seed(0)
    dec = Tacotron(SynthesizerDims.tiny()).double().decoder
    P = dec.prenet.fc2.out_features
    C = dec.attn_rnn.input_size - P
    memory = torch.randn(B, T, C, dtype=torch.float64, requires_grad=True)
    keys = torch.randn(B, T, dec.attn_net.W.out_features, dtype=torch.float64, requires_grad=True)
    pre = torch.randn(S, B, P, dtype=torch.float64, requires_grad=True)
    mask = None
    if masked:
        mask = torch.ones(B, T, dtype=torch.bool)
        mask[1, T - 3 :] = False
    weights = [torch.randn(S, B, n, dtype=torch.float64) for n in (dec.attn_rnn.hidden_size, C, T)]
    params = [memory, keys, pre, *dec.attn_rnn.parameters(), *dec.attn_net.parameters()]
    runs = []
    for fn in (_reference, attention_loop):
        for p in params:
            p.grad = None
        outs = fn(dec, pre, memory, keys, mask)
        if used == "all":
            loss = sum((o * w).sum() for o, w in zip(outs, weights))
        else:  # only the scores (as the guided-attention term reads them): the other outputs get no gradient
            loss = (outs[2] * weights[2]).sum()
        loss.backward()
        runs.append([o.detach() for o in outs] + [p.grad.clone() for p in params])
    assert len(runs[0]) == 3 + len(params)
    for got, want in zip(runs[1], runs[0]):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    if T > 1:  # (one text position: the softmax is constant, nothing reaches the attention's weights)
        assert all(float(g.abs().max()) > 0 for g in runs[1][3:])  # every input's gradient is reached
    if mask is not None:
        assert float(runs[1][2][:, 1, T - 3 :].abs().max()) == 0.0  # masked text gets no weight


def test_the_decoder_uses_it_for_training_passes_only(monkeypatch):
    """A training pass (gradients wanted) runs the attention loop; an inference or no-grad pass does
    not; RTCLONE_FUSED_ATTENTION=0 turns it off; either way the outputs are the same."""
    import rtclone.tacotron_layers as tl

    calls = []
    real = tl._attention_loop
    monkeypatch.setattr(tl, "_attention_loop", lambda *a: calls.append(1) or real(*a))
    torch.manual_seed(0)
    model = Tacotron(SynthesizerDims.tiny()).train()
    model.set_r(2)
    chars = torch.tensor([[5, 6, 7, 8, 1], [8, 9, 1, 0, 0]])
    mels, spk = torch.randn(2, 80, 9).clamp(-4, 4), torch.nn.functional.normalize(torch.randn(2, 256), dim=1)
    out = model(chars, mels, spk, torch.Generator().manual_seed(1))[0]
    assert calls == [1]
    with torch.no_grad():
        again = model(chars, mels, spk, torch.Generator().manual_seed(1))[0]
    assert calls == [1]
    torch.testing.assert_close(again, out.detach(), rtol=1e-5, atol=1e-6)
    monkeypatch.setenv("RTCLONE_FUSED_ATTENTION", "0")
    off = model(chars, mels, spk, torch.Generator().manual_seed(1))[0]
    assert calls == [1]
    torch.testing.assert_close(off, out, rtol=1e-5, atol=1e-6)


def test_global_rng_prenet_dropout_drops_at_the_prenet_rate():
    """Without a generator (how the trainer calls it) the batched prenet still applies dropout p to
    each layer: about p of its units are zero beyond the ReLU's own zeros, and the survivors are scaled."""
    torch.manual_seed(0)
    dec = Tacotron(SynthesizerDims.tiny()).train().decoder
    prevs = torch.randn(40, 8, 80)
    state = dec.init_state(torch.zeros(8, 5, dec.attn_rnn.input_size - dec.prenet.fc2.out_features))
    with torch.no_grad():
        dropped = dec._prenet_all(prevs, None, state, ([], []))
        dec.prenet.p = 0.0
        kept = dec._prenet_all(prevs, None, state, ([], []))
    live = kept > 0
    zero_frac = float((dropped[live] == 0).float().mean())
    assert 0.6 < zero_frac < 0.85  # two layers at p = 0.5: a live unit survives both with ≈ 1/4 (plus fc2's changes)
    assert dropped.shape == kept.shape == (40, 8, dec.prenet.fc2.out_features)
