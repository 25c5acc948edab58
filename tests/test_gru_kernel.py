"""The C GRU and LSTM training layers (rtclone.kernels.cpu.gru) against torch.nn.GRU / nn.LSTM, on
every kernel path, and where rtclone uses them (the WaveRNN's training pass, the synthesizer's
teacher-forced decoder).

Tolerances: float32 products, outputs and gradients within 1e-5 (relative to the largest value) of
torch's layer; bfloat16 products (autocast) within twice torch's-layer-under-autocast's own distance
from the float32 result (plus 1e-3), since both round the same operands to bfloat16.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rtclone.kernels.cpu import gru as fused
from rtclone.synthesizer import SynthesizerDims, Tacotron
from rtclone.vocoder import VocoderDims, WaveRNN

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.skipif(fused._gru is None, reason="rtclone.kernels.cpu._gru is not built"),
]
NAMES = ["out", "x", "w_ih", "w_hh", "b_ih", "b_hh"]


@pytest.fixture(params=[(True, True), (True, False), (False, False)], ids=["bf16dot", "avx2", "scalar"])
def kernels(request, monkeypatch):
    """Each C path in turn (those the CPU lacks fall back, and the test then checks the fallback)."""
    monkeypatch.setattr(fused, "_KERNELS", list(request.param))
    yield fused.kernels()
    fused._gru.set_kernels(True, True)


def _layer(kind: str, seed: int, n_in: int, r: int) -> nn.Module:
    torch.manual_seed(seed)
    layer = (nn.GRU if kind == "gru" else nn.LSTM)(n_in, r, batch_first=True)
    with torch.no_grad():  # non-zero biases of both halves, so their gradients are checked apart
        layer.bias_ih_l0.uniform_(-0.5, 0.5)
        layer.bias_hh_l0.uniform_(-0.5, 0.5)
    return layer


def _fused(layer: nn.Module):
    return fused.gru_layer if isinstance(layer, nn.GRU) else fused.lstm_layer


def _run(layer: nn.Module, x: torch.Tensor, w: torch.Tensor, use_fused: bool, bf16: bool):
    """Output and the gradients (x, w_ih, w_hh, b_ih, b_hh) of sum(out * w)."""
    params = [layer.weight_ih_l0, layer.weight_hh_l0, layer.bias_ih_l0, layer.bias_hh_l0]
    x = x.clone().requires_grad_(True)
    for p in params:
        p.grad = None
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        out = _fused(layer)(x, *params) if use_fused else layer(x)[0]
    (out.float() * w).sum().backward()
    return [out.detach().float(), x.grad] + [p.grad.clone() for p in params]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


KINDS = pytest.mark.parametrize("kind", ["gru", "lstm"])


# B = 5 leaves a partial group of rows; R = 32 lets the bfloat16-pair products run both ways
# (N % 32 == 0), R = 16 the float32 tiles, R = 8 leaves the backward's product (N = R) to the scalar loop
@KINDS
@pytest.mark.parametrize("shape", [(5, 23, 12, 32), (4, 9, 32, 16), (3, 6, 5, 8), (1, 1, 7, 32)])
def test_float32_matches_torch(kernels, kind, shape):
    b, t, n_in, r = shape
    layer = _layer(kind, 0, n_in, r)
    g = torch.Generator().manual_seed(1)
    x, w = torch.randn(b, t, n_in, generator=g), torch.randn(b, t, r, generator=g)
    ref, got = _run(layer, x, w, False, False), _run(layer, x, w, True, False)
    for name, a, e in zip(NAMES, got, ref):
        assert a.shape == e.shape and a.dtype == torch.float32, name
        assert _rel(a, e) < 1e-5, (name, _rel(a, e))


@KINDS
@pytest.mark.parametrize("shape", [(5, 40, 24, 32), (3, 17, 16, 16)])
def test_bfloat16_autocast_as_close_as_torch(kernels, kind, shape):
    b, t, n_in, r = shape
    layer = _layer(kind, 2, n_in, r)
    g = torch.Generator().manual_seed(3)
    x, w = torch.randn(b, t, n_in, generator=g), torch.randn(b, t, r, generator=g)
    exact = _run(layer, x, w, False, False)
    theirs, ours = _run(layer, x, w, False, True), _run(layer, x, w, True, True)
    for name, a, tref, e in zip(NAMES, ours, theirs, exact):
        err, budget = _rel(a, e), 2 * _rel(tref, e) + 1e-3
        assert err < budget, (name, err, budget)
        assert err > 1e-7 or (kind == "gru" and name.startswith("b_")), (name, "bfloat16 products should not be exact")


@KINDS
def test_paths_agree_and_report(kind):
    """Every path computes the same function: outputs of each path within float32/bf16 rounding."""
    layer = _layer(kind, 4, 20, 32)
    x = torch.randn(6, 30, 20, generator=torch.Generator().manual_seed(5))
    w = torch.ones(6, 30, 32)
    seen = {}
    try:
        for wanted in ([True, True], [True, False], [False, False]):
            fused._KERNELS[:] = wanted
            k = fused.kernels()
            assert not (k["bf16dot"] and not wanted[1]) and not (k["vectorised"] and not wanted[0])
            seen[tuple(wanted)] = _run(layer, x, w, True, True)
    finally:
        fused._KERNELS[:] = [True, True]
    base = seen[(False, False)]
    for key, got in seen.items():
        for a, e in zip(got, base):
            assert _rel(a, e) < 2e-2, key


@KINDS
def test_no_grad_forward_and_empty_sequence(kind):
    layer = _layer(kind, 6, 8, 16)
    x = torch.randn(2, 11, 8, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        assert _rel(_fused(layer)(x, *layer.parameters()), layer(x)[0]) < 1e-5
        assert _fused(layer)(x[:, :0], *layer.parameters()).shape == (2, 0, 16)


@KINDS
def test_bad_shapes_are_refused(kind):
    layer, other = _layer(kind, 8, 8, 16), _layer("lstm" if kind == "gru" else "gru", 8, 8, 16)
    fn = _fused(layer)
    with pytest.raises(ValueError, match="bad shapes"):
        fn(torch.randn(2, 5, 9), *layer.parameters())
    with pytest.raises(ValueError, match="bad shapes"):
        fn(torch.randn(5, 8), *layer.parameters())
    with pytest.raises(ValueError, match="bad shapes"):  # the other cell's weights
        fn(torch.randn(2, 5, 8), *other.parameters())
    with pytest.raises(ValueError, match="float32 weights"):
        fn(torch.randn(2, 5, 8, dtype=torch.float64), *layer.parameters())


def _zoneout_reference(layer: nn.LSTM, x: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """An LSTM step loop in plain torch whose state keeps its previous value where the mask is 1."""
    b, r = x.shape[0], layer.hidden_size
    h, c, outs = x.new_zeros(b, r), x.new_zeros(b, r), []
    for t in range(x.shape[1]):
        g = x[:, t] @ layer.weight_ih_l0.t() + layer.bias_ih_l0 + h @ layer.weight_hh_l0.t() + layer.bias_hh_l0
        i, f, gg, o = g.chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(gg)
        new = torch.sigmoid(o) * torch.tanh(c)
        h = new + masks[t] * (h - new)
        outs.append(h)
    return torch.stack(outs, dim=1)


@pytest.mark.parametrize("shape", [(5, 23, 12, 32), (3, 6, 5, 8)])
def test_lstm_zoneout_matches_a_torch_step_loop(kernels, shape):
    b, t, n_in, r = shape
    layer = _layer("lstm", 12, n_in, r)
    g = torch.Generator().manual_seed(13)
    x, w = torch.randn(b, t, n_in, generator=g), torch.randn(b, t, r, generator=g)
    masks = (torch.rand(t, b, r, generator=g) < 0.3).float()
    params = [layer.weight_ih_l0, layer.weight_hh_l0, layer.bias_ih_l0, layer.bias_hh_l0]
    runs = []
    for ours in (False, True):
        xg = x.clone().requires_grad_(True)
        out = fused.lstm_layer(xg, *params, zoneout=masks) if ours else _zoneout_reference(layer, xg, masks)
        runs.append([out.detach()] + list(torch.autograd.grad((out * w).sum(), [xg] + params)))
    for name, a, e in zip(NAMES, runs[1], runs[0]):
        assert _rel(a, e) < 1e-5, (name, _rel(a, e))
    # a mask of ones never lets the state move from zero; of zeros, it is the plain layer
    with torch.no_grad():
        assert float(fused.lstm_layer(x, *params, zoneout=torch.ones(t, b, r)).abs().max()) == 0.0
        assert _rel(fused.lstm_layer(x, *params, zoneout=torch.zeros(t, b, r)), layer(x)[0]) < 1e-5
    with pytest.raises(ValueError, match="zoneout"):
        fused.lstm_layer(x, *params, zoneout=masks[:, :1])


def test_unusable_weight_layouts_are_refused():
    buf = torch.zeros(64 * 16)
    p = buf.data_ptr()
    with pytest.raises(ValueError, match="layout 1 unusable"):  # bfloat16 pairs with float32 operands
        fused._gru.fwd(p, 48, p, p, 1, p, p, 16, p, 16, p, p, 1, 16, 0)
    with pytest.raises(ValueError, match="layout 1 unusable"):
        fused._gru.bwd(p, p, 16, p, p, p, 16, p, 48, p, p, 1, p, p, 1, 16, 0, 1)
    with pytest.raises(ValueError, match="layout 1 unusable"):
        fused._gru.lstm_fwd(p, 64, p, p, 1, p, 16, p, p, 16, p, 0, p, 16, 1, 16, 0)
    with pytest.raises(ValueError, match="layout 2 unusable"):  # float32 tiles need N % 16 == 0
        fused._gru.lstm_bwd(p, p, p, 8, p, p, p, 8, p, 32, p, p, 2, p, 0, 1, 8, 0, 1)


def test_wavernn_training_pass_is_unchanged(monkeypatch):
    """WaveRNN.forward (the training pass) gives the same loss and gradients with and without it."""
    dims = VocoderDims(rnn_dims=32, fc_dims=32, feat_dims=8, compute_dims=16, res_out_dims=8, res_blocks=1)
    torch.manual_seed(9)
    model = WaveRNN(dims).train()
    g = torch.Generator().manual_seed(10)
    hops = 3
    x = torch.rand(3, hops * dims.hop_length, generator=g) * 2 - 1
    mels = torch.randn(3, dims.feat_dims, hops + 2 * dims.pad, generator=g)

    def grads(flag: str):
        monkeypatch.setenv("RTCLONE_FUSED_GRU", flag)
        torch.manual_seed(11)  # dropout-free model; batch-norm statistics move alike in both runs
        model.zero_grad(set_to_none=True)
        out = model(x, mels)
        out.square().mean().backward()
        return [out.detach()] + [p.grad.clone() for p in model.parameters()]

    assert fused.available()
    monkeypatch.setenv("RTCLONE_FUSED_GRU", "0")
    assert not fused.available()
    base, got = grads("0"), grads("1")
    for a, e in zip(got, base):
        assert _rel(a, e) < 1e-4


def _decoder_pass(model: Tacotron):
    chars = torch.tensor([[5, 6, 7, 8, 9, 1], [8, 9, 10, 1, 0, 0]])
    g = torch.Generator().manual_seed(0)
    mels = torch.randn(2, 80, 22, generator=g).clamp(-4, 4)
    spk = torch.nn.functional.normalize(torch.randn(2, 256, generator=g))
    model.zero_grad()
    mel, post, _, stop = model(chars, mels, spk, torch.Generator().manual_seed(3))
    ((mel - mels).abs().mean() + (post - mels).square().mean() + stop.sigmoid().mean()).backward()
    return [mel.detach(), post.detach(), stop.detach()] + [p.grad.clone() for p in model.parameters()]


def test_decoder_teacher_forced_pass_uses_the_lstm_layer(monkeypatch):
    """The synthesizer's training pass runs both residual LSTMs in the C layer: float32 alike with and
    without it; with ``Decoder.lstm_bf16`` under autocast (products in bfloat16), close to float32 but
    not equal; inference (no gradients) keeps torch's LSTM."""
    torch.manual_seed(0)
    model = Tacotron(SynthesizerDims.tiny()).train()
    model.set_r(2)
    calls = []
    real = fused.lstm_layer
    monkeypatch.setattr(fused, "lstm_layer", lambda *a, **k: calls.append(torch.is_autocast_enabled("cpu")) or real(*a, **k))
    monkeypatch.setenv("RTCLONE_FUSED_ATTENTION", "0")  # the LSTMs alone differ between the passes compared
    monkeypatch.setenv("RTCLONE_FUSED_LSTM", "0")
    assert not fused.lstm_available()
    base = _decoder_pass(model)
    assert calls == []
    monkeypatch.setenv("RTCLONE_FUSED_LSTM", "1")
    got = _decoder_pass(model)
    assert calls == [False, False]
    for a, e in zip(got, base):  # float32 sums in other orders (torch's LSTM is MKL's, which differs by CPU)
        torch.testing.assert_close(a, e, rtol=1e-4, atol=1e-5)
    model.decoder.lstm_bf16 = True
    half = _decoder_pass(model)
    assert calls[2:] == [True, True]
    assert max(_rel(a, e) for a, e in zip(half[:3], base[:3])) > 1e-6
    assert all(_rel(a, e) < 0.05 for a, e in zip(half, base))
    with torch.no_grad():
        model(torch.tensor([[5, 6, 1]]), torch.zeros(1, 80, 4), torch.ones(1, 256) / 16)
    assert len(calls) == 4


def test_a_stale_build_is_not_used(monkeypatch):
    """An extension built from other sources (no or another ABI number: e.g. the row-major weight
    layout) is ignored and torch's layers run, rather than the new packing read the old way."""
    import importlib
    import sys
    import types

    import rtclone.kernels.cpu as pkg

    stale = types.ModuleType("rtclone.kernels.cpu._gru")
    stale.fwd = stale.bwd = stale.set_kernels = lambda *a: None  # an older build's functions, no ABI
    monkeypatch.setitem(sys.modules, "rtclone.kernels.cpu._gru", stale)
    monkeypatch.setattr(pkg, "_gru", stale, raising=False)
    try:
        importlib.reload(fused)
        assert fused._gru is None and not fused.available() and not fused.lstm_available()
        with pytest.raises(RuntimeError, match="not built"):
            fused.gru_layer(torch.zeros(1, 2, 8), *_layer("gru", 0, 8, 16).parameters())
    finally:
        monkeypatch.undo()
        importlib.reload(fused)
    assert fused._gru is not None and fused._gru.ABI == fused.ABI
