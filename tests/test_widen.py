"""Widening a trained synthesizer's decoder LSTMs: same function, trainable new units, Adam state moved."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rtclone.errors import OptionsError
from rtclone.synthesizer import SynthesizerDims, Tacotron, TacotronOptions, encode_texts, synthesize
from rtclone.train.synthesizer import taco_loss
from rtclone.train.widen import widen_adam_state, widen_decoder

pytestmark = pytest.mark.usefixtures("one_thread")

TEXTS = ["the cat sat on the mat.", "green apples!"]


def _model(seed: int = 0) -> Tacotron:
    torch.manual_seed(seed)
    m = Tacotron(SynthesizerDims.tiny())
    with torch.no_grad():  # a model whose every weight matters (not only its initialisation)
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    m.set_r(2)
    return m


def _batch(model: Tacotron, seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    T = 12
    mels = torch.rand(len(TEXTS), 80, T, generator=g) * 8 - 4
    stop = torch.zeros(len(TEXTS), T)
    stop[:, -1] = 1
    return {"chars": encode_texts(TEXTS, model.dims.num_chars), "mels": mels,
            "embeds": torch.nn.functional.normalize(torch.rand(len(TEXTS), 256, generator=g), dim=1), "stop": stop}


def test_widened_model_computes_the_same():
    m = _model()
    w = widen_decoder(m, 96)
    assert w.dims == SynthesizerDims(**{**SynthesizerDims.tiny().__dict__, "lstm_dims": 96})
    assert w.decoder.res_rnn1.hidden_size == 96 and w.r == m.r and int(w.step) == int(m.step)
    b = _batch(m)
    m.eval()
    w.eval()
    outs_m = m(b["chars"], b["mels"], b["embeds"], torch.Generator().manual_seed(3))
    outs_w = w(b["chars"], b["mels"], b["embeds"], torch.Generator().manual_seed(3))
    for a, c in zip(outs_m, outs_w):
        torch.testing.assert_close(a, c, rtol=0, atol=1e-6)
    emb = b["embeds"][:1].numpy()
    opts = TacotronOptions(seed=5, max_decoder_steps=30, detect_attention_failure=False, on_max_length="truncate")
    (mel_w, att_w, stop_w), = synthesize(w, TEXTS[:1], emb, opts)
    (mel_m, att_m, stop_m), = synthesize(m, TEXTS[:1], emb, opts)
    assert stop_w == stop_m and mel_m.shape[1] >= 8
    np.testing.assert_allclose(mel_w, mel_m, atol=1e-5)
    np.testing.assert_allclose(att_w, att_m, atol=1e-6)
    # the new units exist and are not a copy of zeros: they compute something, the projection ignores it
    assert w.decoder.res_rnn1.weight_ih[64:96].abs().sum() > 0
    assert torch.count_nonzero(w.decoder.mel_proj.weight[:, 64:]) == 0
    assert torch.count_nonzero(w.decoder.stop_proj.weight[:, 64:96]) == 0


def test_new_units_learn_and_old_ones_get_the_same_gradients():
    m = _model()
    w = widen_decoder(m, 96)
    b = _batch(m)
    for net in (m, w):
        net.zero_grad()
        loss, _, _ = taco_loss(net, b, 0.0, torch.Generator().manual_seed(4))
        loss.backward()
    old, wide = m.decoder, w.decoder
    # the projection's columns for the new units get a gradient: the capacity is usable
    assert wide.mel_proj.weight.grad[:, 64:].abs().sum() > 0
    # old units see no difference: their gradients equal the narrow model's
    torch.testing.assert_close(wide.mel_proj.weight.grad[:, :64], old.mel_proj.weight.grad, rtol=1e-4, atol=1e-7)
    for gate in range(4):
        torch.testing.assert_close(wide.res_rnn2.weight_hh.grad[gate * 96:gate * 96 + 64, :64],
                                   old.res_rnn2.weight_hh.grad[gate * 64:(gate + 1) * 64], rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(w.encoder.embedding.weight.grad, m.encoder.embedding.weight.grad, rtol=1e-4, atol=1e-7)


def test_adam_state_moves_with_the_weights():
    m = _model()
    b = _batch(m)
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    for k in range(2):  # some history in the moments
        opt.zero_grad()
        taco_loss(m, b, 0.0, torch.Generator().manual_seed(k))[0].backward()
        opt.step()
    w = widen_decoder(m, 96)
    state = widen_adam_state(opt.state_dict(), m, w)
    wopt = torch.optim.Adam(w.parameters(), lr=1e-3)
    wopt.load_state_dict(state)  # shapes fit
    names = [n for n, _ in w.named_parameters()]
    i = names.index("decoder.res_rnn1.weight_hh")
    moved, orig = wopt.state_dict()["state"][i], opt.state_dict()["state"][i]
    assert float(moved["step"]) == float(orig["step"]) == 2.0
    for gate in range(4):
        torch.testing.assert_close(moved["exp_avg"][gate * 96:gate * 96 + 64, :64], orig["exp_avg"][gate * 64:(gate + 1) * 64])
    assert torch.count_nonzero(moved["exp_avg_sq"][64:96]) == 0 and torch.count_nonzero(moved["exp_avg_sq"][:, 64:]) == 0
    # one more Adam step on each: the old weights move exactly alike (the wide run continues the narrow one)
    for net, o in ((m, opt), (w, wopt)):
        o.zero_grad()
        taco_loss(net, b, 0.0, torch.Generator().manual_seed(9))[0].backward()
        o.step()
    torch.testing.assert_close(w.decoder.mel_proj.weight[:, :64], m.decoder.mel_proj.weight, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(w.postnet.rnn.weight_hh_l0, m.postnet.rnn.weight_hh_l0, rtol=1e-4, atol=1e-6)


def test_bad_widths_are_refused():
    m = _model()
    for bad in (32, 63, 64.5, True, "96"):
        with pytest.raises(OptionsError):
            widen_decoder(m, bad)
    same = widen_decoder(m, 64)  # no-op widening is allowed and exact
    for (n, a), (_, c) in zip(m.state_dict().items(), same.state_dict().items()):
        assert torch.equal(a, c), n
