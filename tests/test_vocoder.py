"""WaveRNN vocoder: RTVC layout, receptive field, reference loop, streaming parity, batching, errors."""

from __future__ import annotations

import dataclasses
import sys
import types
import warnings

import numpy as np
import pytest
import torch

import rtclone.kernels
from rtclone import audio
from rtclone.checkpoints import load_model
from rtclone.errors import BackendUnavailableError, InputShapeError, OptionsError
from rtclone.vocoder import VocoderDims, WaveRNN, _smooth, gru_cell, upsample_context
from rtclone.vocoder_gen import GriffinLimVocoder, VocoderOptions, fold_with_overlap, stream_info, xfade_and_unfold

TINY = VocoderDims(rnn_dims=32, fc_dims=32, res_blocks=1, compute_dims=16, res_out_dims=32)


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one torch thread for the module


def tiny(mode: str = "RAW", seed: int = 0) -> WaveRNN:
    torch.manual_seed(seed)
    dims = TINY if mode == "RAW" else dataclasses.replace(TINY, mode="MOL", bits=16, mu_law=False)
    model = WaveRNN(dims).eval()
    with torch.no_grad():  # non-trivial batch-norm statistics, so eval-mode maths is exercised
        for mod in model.modules():
            if isinstance(mod, torch.nn.BatchNorm1d):
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 1.5)
    return model


def rtvc_layout(res_blocks: int = 10) -> dict[str, tuple[int, ...]]:
    """Names and shapes of RTVC's vocoder.pt model_state (rtvc-formats.md), in file order."""
    shapes: dict[str, tuple[int, ...]] = {"step": (1,), "upsample.resnet.conv_in.weight": (128, 80, 5)}
    bn = lambda p: {f"{p}.weight": (128,), f"{p}.bias": (128,), f"{p}.running_mean": (128,), f"{p}.running_var": (128,), f"{p}.num_batches_tracked": ()}  # noqa: E731
    shapes.update(bn("upsample.resnet.batch_norm"))
    for i in range(res_blocks):
        p = f"upsample.resnet.layers.{i}"
        shapes[f"{p}.conv1.weight"] = (128, 128, 1)
        shapes[f"{p}.conv2.weight"] = (128, 128, 1)
        shapes.update(bn(f"{p}.batch_norm1"))
        shapes.update(bn(f"{p}.batch_norm2"))
    shapes.update({"upsample.resnet.conv_out.weight": (128, 128, 1), "upsample.resnet.conv_out.bias": (128,)})
    shapes.update({"upsample.up_layers.1.weight": (1, 1, 1, 11), "upsample.up_layers.3.weight": (1, 1, 1, 11), "upsample.up_layers.5.weight": (1, 1, 1, 17)})
    shapes.update({"I.weight": (512, 113), "I.bias": (512,)})
    for rnn, n_in in (("rnn1", 512), ("rnn2", 544)):
        shapes.update({f"{rnn}.weight_ih_l0": (1536, n_in), f"{rnn}.weight_hh_l0": (1536, 512), f"{rnn}.bias_ih_l0": (1536,), f"{rnn}.bias_hh_l0": (1536,)})
    shapes.update({"fc1.weight": (512, 544), "fc1.bias": (512,), "fc2.weight": (512, 544), "fc2.bias": (512,), "fc3.weight": (512, 512), "fc3.bias": (512,)})
    return shapes


def test_rtvc_state_dict_loads_strictly_and_runs(tmp_path):
    layout = rtvc_layout()
    assert len(layout) == 148
    g = torch.Generator().manual_seed(1)
    sd = {}
    for name, shape in layout.items():
        if name.endswith("num_batches_tracked") or name == "step":
            sd[name] = torch.full(shape, 7, dtype=torch.long)
        elif name.endswith("running_var"):
            sd[name] = torch.rand(shape, generator=g) + 0.5
        else:
            sd[name] = torch.randn(shape, generator=g) * 0.05
    assert round(sum(v.numel() for v in sd.values()) / 1e4) == 449  # "4.49 M values"
    ours = WaveRNN(VocoderDims()).state_dict()
    assert {k: tuple(v.shape) for k, v in ours.items()} == layout
    path = tmp_path / "vocoder.pt"
    torch.save({"model_state": sd, "optimizer_state": {}}, path)
    model = load_model(path, kind="vocoder")  # strict
    assert model.dims == VocoderDims()
    for name, value in model.state_dict().items():
        assert torch.equal(value, sd[name]), name
    mel = torch.randn(80, 2)
    wav = model.generate(mel, backend="torch", fade_out=0.0)
    assert wav.shape == (200,) and wav.dtype == np.float32 and np.isfinite(wav).all()


@pytest.mark.parametrize("mode", ["RAW", "MOL"])
def test_dims_read_back_from_state_dict(mode):
    model = tiny(mode)
    assert VocoderDims.from_rtvc_state_dict(model.state_dict()) == model.dims
    assert len(model.state_dict()) == 148 - 9 * 12  # 1 res block instead of 10
    assert model.fc3.out_features == (512 if mode == "RAW" else 30)


def test_receptive_field_matches_the_network():
    model = tiny()
    before, after = upsample_context(model.upsample)
    assert (before, after) == (2, 2) == (model.dims.pad, model.lookahead)
    hop, t, j = model.dims.hop_length, 16, 8
    mel = torch.randn(1, 80, t + 2 * model.dims.pad)
    base = model.conditioning(mel)
    bumped = mel.clone()
    bumped[0, :, j + model.dims.pad] += 1.0  # frame j of the unpadded utterance
    diff = (model.conditioning(bumped) - base).abs().amax(dim=(0, 2))  # (t * hop,)
    changed = sorted({int(s) // hop for s in torch.nonzero(diff > 0).flatten()})
    assert changed == list(range(j - after, j + before + 1))  # frames whose samples see frame j


def test_sample_loop_follows_the_spec_in_float64():
    """Teacher-force the spec's float64 maths with our samples: the labels agree step by step."""
    model = tiny()
    steps = 400
    cond = model.conditioning(torch.randn(1, 80, 2 + 2 * model.dims.pad) * 2)[:, :steps]
    u = torch.rand(1, steps, 2, generator=torch.Generator().manual_seed(5))
    x_out, (x_last, h1_last, h2_last) = model.sample_loop(cond, u)
    p = {k: v.double() for k, v in model.state_dict().items()}
    n, m = model.dims.n_classes, 80
    x, h1, h2 = torch.zeros(1, dtype=torch.float64), torch.zeros(32, dtype=torch.float64), torch.zeros(32, dtype=torch.float64)
    agree = 0
    for t in range(steps):
        c = cond[0, t].double()
        mt, a1, a2, a3, a4 = c[:m], c[m : m + 8], c[m + 8 : m + 16], c[m + 16 : m + 24], c[m + 24 :]
        i = p["I.weight"] @ torch.cat([x, mt, a1]) + p["I.bias"]
        h1 = gru_cell(i[None], h1[None], p["rnn1.weight_ih_l0"], p["rnn1.weight_hh_l0"], p["rnn1.bias_ih_l0"], p["rnn1.bias_hh_l0"])[0]
        x1 = i + h1
        h2 = gru_cell(torch.cat([x1, a2])[None], h2[None], p["rnn2.weight_ih_l0"], p["rnn2.weight_hh_l0"], p["rnn2.bias_ih_l0"], p["rnn2.bias_hh_l0"])[0]
        x2 = x1 + h2
        f1 = torch.relu(p["fc1.weight"] @ torch.cat([x2, a3]) + p["fc1.bias"])
        f2 = torch.relu(p["fc2.weight"] @ torch.cat([f1, a4]) + p["fc2.bias"])
        cdf = torch.cumsum(torch.softmax(p["fc3.weight"] @ f2 + p["fc3.bias"], 0), 0)
        label = min(int((cdf <= u[0, t, 0].double() * cdf[-1]).sum()), n - 1)
        agree += int(label == round((float(x_out[0, t]) + 1) * (n - 1) / 2))
        x = x_out[0, t : t + 1].double()  # teacher forcing with our sample
    assert agree >= steps - 2
    assert torch.allclose(h1_last.double()[0], h1, atol=1e-4) and torch.allclose(h2_last.double()[0], h2, atol=1e-4)
    assert float(x_last[0]) == float(x_out[0, -1])
    assert len(set(x_out[0].tolist())) > 20  # really sampling, not stuck on one label


def test_gru_cell_matches_torch():
    g = torch.nn.GRUCell(12, 8)
    x, h = torch.randn(3, 12), torch.randn(3, 8)
    ours = gru_cell(x, h, g.weight_ih, g.weight_hh, g.bias_ih, g.bias_hh)
    assert torch.allclose(ours, g(x, h), atol=1e-6)


def test_upsample_smoothing_equals_the_one_channel_conv2d():
    """The upsample convs run as depthwise conv1d (speed); values and gradients are the Conv2d's."""
    torch.manual_seed(3)
    convs = [m for m in WaveRNN(VocoderDims(rnn_dims=32, fc_dims=32)).upsample.up_layers if isinstance(m, torch.nn.Conv2d)]
    assert [c.weight.shape[-1] for c in convs] == [11, 11, 17]
    for conv in convs:
        with torch.no_grad():
            conv.weight.normal_()  # asymmetric, so a flipped or shifted kernel would show
        x = torch.randn(2, 1, 80, 123, requires_grad=True)
        w = torch.randn(2, 1, 80, 123)
        ref = conv(x)
        got = _smooth(conv, x, 80)
        assert got.shape == ref.shape and torch.allclose(got, ref, atol=1e-5)
        g_ref = torch.autograd.grad((ref * w).sum(), [x, conv.weight])
        g_got = torch.autograd.grad((got * w).sum(), [x, conv.weight])
        for a, b in zip(g_got, g_ref):
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-4 * float(b.abs().max()))


def test_forward_matches_sample_loop():
    """The teacher-forced training pass and the generation loop compute the same network."""
    model = tiny()
    frames = model.dims.pad * 2 + 3
    window = torch.randn(1, 80, frames) * 2
    cond = model.conditioning(window)  # (1, 600, 112)
    u = torch.rand(1, cond.shape[1], 2)
    x, _ = model.sample_loop(cond, u)
    x_prev = torch.cat([torch.zeros(1, 1), x[:, :-1]], 1)
    with torch.no_grad():
        logits = model(x_prev, window)[0]  # (600, 512)
    cdf = torch.cumsum(torch.softmax(logits, -1), -1)
    labels = (cdf <= (u[0, :, :1] * cdf[:, -1:])).sum(-1).clamp(max=511)
    assert (2 * labels.float() / 511 - 1 == x[0]).float().mean() >= 0.995


def test_streaming_equals_unbatched_generation():
    model = tiny()
    mel = torch.randn(80, 27) * 2
    opts = VocoderOptions(backend="torch", seed=11)
    ref = model.generate(mel, opts)
    assert ref.shape == ((27 - 1) * 200,) and ref.dtype == np.float32
    consumed = []

    def chunks():
        for a, b in ((0, 5), (5, 5), (5, 6), (6, 20), (20, 23), (23, 27)):  # includes empty chunks
            consumed.append(b)
            yield mel[:, a:b].numpy() if a % 2 else mel[:, a:b]

    parts = list(model.stream(chunks(), opts))
    assert np.array_equal(np.concatenate(parts), ref)
    # Without a held-back fade-out, audio comes out before the last chunk arrives.
    consumed.clear()
    gen = model.stream(chunks(), opts, fade_out=0.0)
    first = next(gen)
    assert consumed[-1] < 27 and len(first) == 8 * 200  # one block of 8 frames after 8 + 2 frames
    rest = np.concatenate([first, *gen])
    assert np.array_equal(rest, model.generate(mel, opts, fade_out=0.0))
    assert np.array_equal(rest[:-4000], ref[:-4000]) and not np.array_equal(rest[-4000:], ref[-4000:])


@pytest.mark.parametrize("fade_out", [0.0, 0.2])
def test_stream_info_predicts_the_first_chunk(fade_out):
    model = tiny()
    mel = torch.randn(80, 40)
    opts = VocoderOptions(backend="torch", cond_block=4, fade_out=fade_out)
    info = stream_info(model, opts)
    assert (info.block_frames, info.lookahead_frames, info.holdback_samples) == (4, 2, round(fade_out * 16000))
    consumed = []

    def frames():
        for j in range(40):
            consumed.append(j + 1)
            yield mel[:, j : j + 1]

    first = next(model.stream(frames(), opts))
    assert consumed[-1] == info.first_chunk_frames == (6 if fade_out == 0 else 22)
    assert len(first) == (info.first_chunk_frames - 2) * 200 - info.holdback_samples


def test_seed_determinism_and_modes():
    model = tiny()
    mel = torch.randn(80, 6)
    a = model.generate(mel, backend="torch", seed=1)
    assert np.array_equal(a, model.generate(mel, backend="torch", seed=1))
    assert not np.array_equal(a, model.generate(mel, backend="torch", seed=2))
    mol = tiny("MOL")
    y = mol.generate(mel, backend="torch", de_emphasis=False, fade_out=0.0)
    assert y.shape == (1000,) and np.abs(y).max() <= 1.0 and len(np.unique(y)) > 100
    parts = list(mol.stream([mel[:, :3], mel[:, 3:]], backend="torch", de_emphasis=False, fade_out=0.0))
    assert np.array_equal(np.concatenate(parts), y)
    with pytest.raises(OptionsError):
        mol.generate(mel, backend="torch", mu_law=True)


def test_fold_unfold_round_trip():
    for total, target, overlap in ((5000, 1000, 200), (1000, 1000, 200), (37, 8, 3), (900, 300, 0)):
        x = torch.randn(total, 2, dtype=torch.float64)
        folded = fold_with_overlap(x, target, overlap)
        step = target + overlap
        n = folded.shape[0]
        assert folded.shape == (n, target + 2 * overlap, 2) and n * step + overlap >= total
        assert (n - 1) * step + overlap < total or n == 1
        for ch in range(2):
            back = xfade_and_unfold(folded[..., ch].numpy(), overlap, fade="linear")[:total]
            np.testing.assert_allclose(back, x[:, ch].numpy(), rtol=0, atol=1e-12)
    # Equal power: w_in^2 + w_out^2 = 1 over the cross-fade, the warm-up half is silent.
    ones = np.ones((2, 20))
    w_out = xfade_and_unfold(ones * np.array([[1.0], [0.0]]), 8, "power")[12:20]
    w_in = xfade_and_unfold(ones * np.array([[0.0], [1.0]]), 8, "power")[12:20]
    assert np.all(w_in[:4] == 0) and np.all(w_out[:4] == 1)
    np.testing.assert_allclose(w_in**2 + w_out**2, 1.0, atol=1e-12)


def test_batched_generation_shapes():
    model = tiny()
    mel = torch.randn(80, 21)
    for target, overlap in ((1000, 200), (3000, 400)):
        y = model.generate(mel, backend="torch", batched=True, target=target, overlap=overlap)
        assert y.shape == (20 * 200,) and y.dtype == np.float32 and np.isfinite(y).all()
    y = model.generate(mel, backend="torch", batched=True, target=1000, overlap=200, fade_out=0.0)
    assert np.array_equal(y, model.generate(mel, backend="torch", batched=True, target=1000, overlap=200, fade_out=0.0))
    assert model.generate(mel[:, :1], backend="torch", batched=True).shape == (0,)
    with pytest.raises(OptionsError):
        list(model.stream([mel], batched=True))


@pytest.mark.parametrize(
    "bad",
    [np.zeros((79, 10), np.float32), np.full((80, 4), np.nan, np.float32), np.zeros((80, 0), np.float32), np.zeros(80), "mel"],
)
def test_bad_mels_raise_input_shape_error(bad):
    model = tiny()
    with pytest.raises(InputShapeError):
        model.generate(bad, backend="torch")
    with pytest.raises(InputShapeError):
        list(model.stream([bad], backend="torch"))
    with pytest.raises(InputShapeError):
        GriffinLimVocoder().generate(bad)


def test_bad_options():
    for kw in ({"target": 0}, {"overlap": -1}, {"backend": "gpu"}, {"seed": -1}, {"fade_out": -0.1}, {"batched": 1}, {"cond_block": 0}):
        with pytest.raises(OptionsError):
            VocoderOptions(**kw)
    with pytest.raises(OptionsError):
        tiny().generate(np.zeros((80, 4), np.float32), nonsense=1)


def test_backend_dispatch(monkeypatch):
    model = tiny()
    mel = torch.randn(80, 4)
    ref = model.generate(mel, backend="torch")
    calls = []

    class FakeNative:
        def __init__(self, state_dict, *, mode, bits, block, threads):
            calls.append((len(state_dict), mode, bits, block, threads))
            self.generate = model.sample_loop

    fake = types.SimpleNamespace(available=lambda: True, unavailable_reason=lambda: None, NativeWaveRNN=FakeNative)
    monkeypatch.setitem(sys.modules, "rtclone.kernels.cpu", fake)
    monkeypatch.setattr(sys.modules["rtclone.kernels"], "cpu", fake, raising=False)
    assert np.array_equal(model.generate(mel, backend="cpu-native", threads=2), ref)
    assert calls == [(len(model.state_dict()), "RAW", 9, (16, 1), 2)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.array_equal(model.generate(mel, backend="auto"), ref)  # native available: no warning
    down = types.SimpleNamespace(available=lambda: False, unavailable_reason=lambda: "not built")
    monkeypatch.setitem(sys.modules, "rtclone.kernels.cpu", down)
    monkeypatch.setattr(sys.modules["rtclone.kernels"], "cpu", down, raising=False)
    with pytest.raises(BackendUnavailableError, match="not built"):
        model.generate(mel, backend="cpu-native")
    with pytest.warns(RuntimeWarning, match="torch reference"):
        assert np.array_equal(model.generate(mel, backend="auto"), ref)
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    if not torch.cuda.is_available():
        with pytest.raises(BackendUnavailableError):
            model.generate(mel, backend="triton")


def test_griffin_lim_vocoder(speech):
    wav = speech("Griffin Lim.", "kal16")[:8000]
    mel = audio.synth_mel(wav)
    gl = GriffinLimVocoder(n_iter=16, segments=None)  # whole-utterance: stream yields generate's output once
    y = gl.generate(mel, fade_out=0.0)
    assert y.shape == ((mel.shape[1] - 1) * 200,) and y.dtype == np.float32
    assert np.array_equal(np.concatenate(list(gl.stream([mel[:, :10], mel[:, 10:]], fade_out=0.0))), y)
    rebuilt = audio.synth_mel(y)
    n = rebuilt.shape[1] - 2
    noise = audio.synth_mel(np.random.default_rng(0).normal(0, 0.05, len(y)).astype(np.float32))
    assert np.mean(np.abs(rebuilt[:, :n] - mel[:, :n])) < 0.5 * np.mean(np.abs(noise[:, :n] - mel[:, :n]))
    faded = gl.generate(mel)  # default fade-out: the last 0.25 s ramp to silence
    assert faded[-1] == 0.0 and np.array_equal(faded[:-4000], y[:-4000])


def test_griffin_lim_vocoder_limits_the_peak_instead_of_clipping(speech):
    mel = audio.synth_mel(speech("Loud and clear.", "rms"))
    raw = audio.griffin_lim(mel, n_iter=16)[: (mel.shape[1] - 1) * 200]
    loud = mel + 1.0  # louder frames: the sharpened magnitudes overshoot full scale
    raw_loud = audio.griffin_lim(loud, n_iter=16)[: (loud.shape[1] - 1) * 200]
    assert np.abs(raw_loud).max() > 1.0  # what the pipeline's clip would have cut
    gl = GriffinLimVocoder(n_iter=16, formants=0.0)
    for m, r in ((mel, raw), (loud, raw_loud)):
        y = gl.generate(m, fade_out=0.0)
        scale = min(1.0, gl.peak / np.abs(r).max())  # quiet output unchanged, loud scaled to the peak
        np.testing.assert_allclose(y, r * scale, atol=1e-6)
        assert np.abs(y).max() <= gl.peak + 1e-6


def test_griffin_lim_vocoder_power(speech):
    mel = audio.synth_mel(speech("Sharp or flat, it says the same.", "slt"))
    n = (mel.shape[1] - 1) * 200
    outs = {}
    for p in (1.0, 1.5):
        gl = GriffinLimVocoder(n_iter=8, power=p, formants=0.0)
        r = audio.griffin_lim(mel, n_iter=8, power=p)[:n]
        outs[p] = gl.generate(mel, fade_out=0.0)
        np.testing.assert_allclose(outs[p], r * min(1.0, gl.peak / np.abs(r).max()), atol=1e-6)
    assert GriffinLimVocoder().power == audio.GRIFFIN_LIM_POWER

    def contrast(m: np.ndarray) -> float:  # spread of the log spectrum over the speech frames
        return float(m[:, m.max(0) > -2.0].std())

    # power 1 keeps the input's spectral contrast (measured 1.316 vs 1.323); sharpening widens it (1.555)
    assert abs(contrast(audio.synth_mel(outs[1.0])) - contrast(mel)) < 0.05
    assert contrast(audio.synth_mel(outs[1.5])) > contrast(mel) + 0.1
    for bad in (0.0, 5, True, "1"):
        with pytest.raises(OptionsError):
            GriffinLimVocoder(power=bad)


def test_native_backend_matches_torch_reference():
    from rtclone.kernels import cpu

    if not cpu.available():
        pytest.skip(f"native CPU kernel unavailable: {cpu.unavailable_reason()}")
    model = tiny()
    mel = torch.randn(80, 41) * 2
    kw = dict(de_emphasis=False, fade_out=0.0, mu_law=False)
    ref = model.generate(mel, backend="torch", **kw)
    native = model.generate(mel, backend="cpu-native", **kw)
    assert np.mean(ref == native) >= 0.95  # spec: same uniforms -> same labels (rare flips tolerated)
    parts = model.stream([mel[:, :7], mel[:, 7:30], mel[:, 30:]], backend="cpu-native", **kw)
    assert np.array_equal(np.concatenate(list(parts)), native)


def test_native_kernel_is_built_once_and_rebuilt_after_a_weight_change():
    import rtclone.kernels.cpu as native
    from rtclone.vocoder import VocoderDims, WaveRNN
    from rtclone.vocoder_gen import VocoderOptions, make_runner

    if not native.available():
        pytest.skip(f"native kernel unavailable: {native.unavailable_reason()}")
    torch.manual_seed(0)
    model = WaveRNN(VocoderDims(rnn_dims=32, fc_dims=32, compute_dims=16, res_out_dims=32, res_blocks=1))
    opts = VocoderOptions(backend="cpu-native")
    first = make_runner(model, opts)
    assert make_runner(model, opts) is first
    cond = torch.randn(1, 50, model.dims.cond_dims)
    u = torch.rand(1, 50, 2, generator=torch.Generator().manual_seed(0))
    before, _ = first(cond, u)
    with torch.no_grad():
        model.fc3.bias.add_(5.0 * torch.randn_like(model.fc3.bias))
    second = make_runner(model, opts)
    assert second is not first
    after, _ = second(cond, u)
    ref, _ = model.sample_loop(cond, u)
    assert not torch.equal(before, after) and torch.allclose(after, ref, atol=1e-5)
