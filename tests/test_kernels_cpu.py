"""Native CPU WaveRNN loop (rtclone.kernels.cpu) against its plain-torch reference.

Tolerances (measured here, stated in the kernel's docs):
- hidden states: |kernel - float32 reference| <= 1e-5 at small dims, <= 1e-4 at RTVC dims after
  2000 teacher-forced steps (summation order and the polynomial exp differ);
- RAW labels: >= 99 % identical over 2000 steps (in practice all), and any flip is a rounding
  boundary case: the float64 reference's label is within one bin of the kernel's;
- MoL samples: within 1e-4 in >= 99 % of steps;
- fp16 weight storage: same tolerances against a reference run on the fp16-rounded weights.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from rtclone.errors import BackendUnavailableError, CheckpointError, InputShapeError, OptionsError
from rtclone.kernels import cpu as kcpu
from rtclone.kernels.cpu import (
    NativeWaveRNN,
    draw_uniforms,
    fold_count,
    labels_from_samples,
    reference_generate,
    replay_reference,
)
from rtclone.kernels.cpu.bench import bench_vocoder, prune_blocks, random_state_dict
from rtclone.kernels.cpu.reference import MATRIX_KEYS

needs_native = pytest.mark.skipif(not kcpu.available(), reason=str(kcpu.unavailable_reason()))

SMALL = dict(rnn_dims=32, fc_dims=32, feat_dims=8, aux_dims=4)
SMALL_COND = 8 + 4 * 4


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one torch thread for the module


def _cond(B: int, T: int, width: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(B, T, width, generator=torch.Generator().manual_seed(seed)) * 0.5


def _half_rounded(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: (v.half().float() if k in MATRIX_KEYS else v) for k, v in sd.items()}


def _max_state_err(a, b) -> float:
    return max(float((x.double() - y.double()).abs().max()) for x, y in zip(a, b))


# ---- small dims: every path against the reference ---------------------------------------------
@needs_native
@pytest.mark.parametrize("mode", ["RAW", "MOL"])
@pytest.mark.parametrize("sparsity", [0.0, 0.75])
@pytest.mark.parametrize("precompute", ["never", "always"])
@pytest.mark.parametrize("vectorized", [True, False])
def test_small_matches_reference(mode, sparsity, precompute, vectorized):
    sd = random_state_dict(sparsity, mode=mode, seed=3, **SMALL)
    B, T = 3, 400
    cond, u = _cond(B, T, SMALL_COND, seed=1), draw_uniforms(B, T, seed=7)
    model = NativeWaveRNN(sd, mode=mode, threads=2, precompute=precompute, vectorized=vectorized)
    assert model.vectorized == (vectorized and kcpu.wavernn._native.has_avx2())
    samples, state = model.generate(cond, u)
    ref, ref_state = reference_generate(sd, cond, u, mode)
    if mode == "RAW":
        assert torch.equal(samples, ref)  # free running: no label flip at these seeds
        assert len(torch.unique(samples)) > 20  # really sampling, not a constant
    else:
        assert float((samples - ref).abs().max()) < 1e-5
    assert _max_state_err(state, ref_state) < 1e-5
    assert float(state[1].abs().max()) > 0.05  # the recurrence did something


@pytest.mark.parametrize("mode", ["RAW", "MOL"])
def test_replay_reference_equals_teacher_forced_loop(mode):
    sd = random_state_dict(0.5, mode=mode, seed=4, **SMALL)
    B, T = 2, 150
    cond, u = _cond(B, T, SMALL_COND, seed=4), draw_uniforms(B, T, seed=4)
    free, _ = reference_generate(sd, cond, u, mode)
    forced = free.roll(1, dims=1)  # some other input sequence
    a, sa = reference_generate(sd, cond, u, mode, forced_x=forced, dtype=torch.float64)
    b, sb = replay_reference(sd, cond, u, forced, mode, dtype=torch.float64)
    assert float((a - b).abs().max()) < 1e-9
    assert _max_state_err(sa, sb) < 1e-9
    c, _ = replay_reference(sd, cond, u, free, mode)
    assert float((c - free).abs().max()) < 1e-5  # replaying its own samples reproduces them


@needs_native
def test_sparse_path_skips_blocks():
    sd = random_state_dict(0.75, **SMALL)
    model = NativeWaveRNN(sd, precompute="never")
    for key, density in model.densities.items():
        assert density == pytest.approx(0.25, abs=0.02), key
    dense = NativeWaveRNN(random_state_dict(0.0, **SMALL), precompute="never")
    assert all(m.col_idx is None for m in dense.mats)  # dense path: no column index
    assert all(m.col_idx is not None for m in model.mats)


@needs_native
def test_streaming_continuation_equals_one_call():
    sd = random_state_dict(0.5, **SMALL)
    B, T, cut = 2, 300, 117
    cond, u = _cond(B, T, SMALL_COND), draw_uniforms(B, T, seed=2)
    for precompute in ("never", "always"):
        model = NativeWaveRNN(sd, precompute=precompute, threads=2)
        whole, st = model.generate(cond, u)
        first, mid = model.generate(cond[:, :cut], u[:, :cut])
        mid_copy = tuple(s.clone() for s in mid)
        second, st2 = model.generate(cond[:, cut:], u[:, cut:], state=mid)
        assert all(torch.equal(a, b) for a, b in zip(mid, mid_copy))  # caller's state untouched
        assert torch.equal(torch.cat([first, second], dim=1), whole)
        assert _max_state_err(st, st2) < 1e-6


@needs_native
def test_empty_inputs_return_empty_and_keep_state():
    model = NativeWaveRNN(random_state_dict(0.0, **SMALL), precompute="never")
    state = (torch.full((2,), 0.5), torch.ones(2, 32), torch.ones(2, 32))
    samples, new_state = model.generate(_cond(2, 0, SMALL_COND), draw_uniforms(2, 0, 0), state=state)
    assert samples.shape == (2, 0)
    assert all(torch.equal(a, b) for a, b in zip(state, new_state))
    samples, _ = NativeWaveRNN(random_state_dict(0.0, **SMALL)).generate(_cond(0, 5, SMALL_COND), draw_uniforms(0, 5, 0))
    assert samples.shape == (0, 5)


@needs_native
def test_same_seed_same_samples_and_seed_matters():
    sd = random_state_dict(0.5, **SMALL)
    model = NativeWaveRNN(sd)
    cond = _cond(1, 500, SMALL_COND)
    a, _ = model.generate(cond, draw_uniforms(1, 500, seed=11))
    b, _ = model.generate(cond, draw_uniforms(1, 500, seed=11))
    c, _ = model.generate(cond, draw_uniforms(1, 500, seed=12))
    assert torch.equal(a, b)
    assert float((a != c).float().mean()) > 0.5


@needs_native
def test_bad_inputs_raise_typed_errors():
    sd = random_state_dict(0.0, **SMALL)
    model = NativeWaveRNN(sd)
    B, T = 2, 10
    u = draw_uniforms(B, T, 0)
    with pytest.raises(InputShapeError):
        model.generate(_cond(B, T, SMALL_COND + 1), u)  # wrong cond width
    nan_cond = _cond(B, T, SMALL_COND)
    nan_cond[1, 3, 2] = float("nan")
    with pytest.raises(InputShapeError):
        model.generate(nan_cond, u)
    with pytest.raises(InputShapeError):
        model.generate(_cond(B + 1, T, SMALL_COND), u)  # mismatched B
    bad_state = (torch.zeros(B + 1), torch.zeros(B + 1, 32), torch.zeros(B + 1, 32))
    with pytest.raises(InputShapeError):
        model.generate(_cond(B, T, SMALL_COND), u, state=bad_state)
    with pytest.raises(InputShapeError):
        model.generate(_cond(B, T, SMALL_COND), u * 2)  # uniforms outside [0, 1]
    with pytest.raises(InputShapeError):
        reference_generate(sd, _cond(B, T, SMALL_COND + 1), u)
    broken = dict(sd)
    broken["fc3.weight"] = broken["fc3.weight"][:, :-1]
    with pytest.raises(CheckpointError):
        NativeWaveRNN(broken)
    with pytest.raises(OptionsError):
        NativeWaveRNN(sd, mode="MULAW")
    with pytest.raises(OptionsError):
        NativeWaveRNN(sd, value_dtype=torch.bfloat16)


@needs_native
def test_vectorised_nonlinearities_accuracy():
    native = kcpu.wavernn._native
    if not native.has_avx2():
        pytest.skip("no AVX2 here")
    x = torch.linspace(-80, 80, 200_001)
    exact = {0: torch.exp(x.double()), 1: torch.sigmoid(x.double()), 2: torch.tanh(x.double())}
    for kind in (0, 1, 2):
        y = torch.empty_like(x)
        native.nonlin(kind, x.data_ptr(), y.data_ptr(), x.numel(), 1)
        if kind == 0:
            err = float(((y.double() - exact[0]) / exact[0]).abs().max())
            assert err < 5e-7, err  # relative
        else:
            err = float((y.double() - exact[kind]).abs().max())
            assert err < 5e-7, err  # absolute


def test_import_without_native_falls_back(monkeypatch):
    from rtclone.kernels.cpu import wavernn

    monkeypatch.setitem(sys.modules, "rtclone.kernels.cpu._native", None)  # import now fails
    monkeypatch.setattr(wavernn, "_native", None)
    monkeypatch.setattr(wavernn, "_import_error", None)
    assert kcpu.available() is False
    assert "not built" in kcpu.unavailable_reason()
    with pytest.raises(BackendUnavailableError):
        NativeWaveRNN(random_state_dict(0.0, **SMALL))
    ref, _ = reference_generate(random_state_dict(0.0, **SMALL), _cond(1, 5, SMALL_COND), draw_uniforms(1, 5, 0))
    assert ref.shape == (1, 5)


def test_prune_blocks_and_fold_count():
    w = torch.randn(64, 40)
    p = prune_blocks(w, 0.9, (16, 1))
    blocks = p.reshape(4, 16, 40, 1).permute(0, 2, 1, 3).reshape(160, 16)
    kept = blocks.ne(0).any(dim=1)
    assert int(kept.sum()) == 16
    norms = w.reshape(4, 16, 40, 1).permute(0, 2, 1, 3).reshape(160, 16).abs().sum(dim=1)  # L1 per block
    assert float(norms[kept].min()) >= float(norms[~kept].max())
    fc3 = prune_blocks(torch.randn(30, 64), 0.5, (16, 1))  # 30 rows: pruned as if padded to 32
    assert fc3.shape == (30, 64) and 0.4 < float(fc3.eq(0).float().mean()) < 0.6
    assert fold_count(8000) == 1 and fold_count(9600) == 1
    assert fold_count(32000) == 4  # RTVC: (32000-800)//8800 = 3 folds + a remainder fold
    assert fold_count(16 * 16000) == 29


# ---- RTVC dims ----------------------------------------------------------------------------------
@needs_native
@pytest.mark.slow
def test_rtvc_raw_2000_steps_labels_and_float64():
    sd = random_state_dict(0.9, block=(16, 1), seed=5)
    T = 2000
    cond, u = _cond(1, T, 208, seed=5), draw_uniforms(1, T, seed=5)
    model = NativeWaveRNN(sd, block=(16, 1))
    samples, state = model.generate(cond, u)
    labels = labels_from_samples(samples, 9)
    assert len(torch.unique(labels)) > 50
    ref, ref_state = replay_reference(sd, cond, u, samples)  # replay the kernel's inputs
    ref64, ref64_state = replay_reference(sd, cond, u, samples, dtype=torch.float64)
    same = float((labels_from_samples(ref, 9) == labels).float().mean())
    assert same >= 0.99, same
    flips = labels_from_samples(ref64, 9) != labels
    assert float(flips.float().mean()) <= 0.01
    assert all(abs(int(d)) <= 1 for d in (labels_from_samples(ref64, 9) - labels)[flips])  # boundary cases only
    assert _max_state_err(state, ref_state) < 1e-4
    assert _max_state_err(state, ref64_state) < 1e-4


@needs_native
@pytest.mark.slow
def test_rtvc_mol_2000_steps():
    sd = random_state_dict(0.9, mode="MOL", seed=6)
    T = 2000
    cond, u = _cond(1, T, 208, seed=6), draw_uniforms(1, T, seed=6)
    samples, state = NativeWaveRNN(sd, mode="MOL").generate(cond, u)
    ref, ref_state = replay_reference(sd, cond, u, samples, "MOL")
    close = float(((samples - ref).abs() < 1e-4).float().mean())
    assert close >= 0.99, close
    assert float(samples.std()) > 0.01
    assert _max_state_err(state, ref_state) < 1e-4


@needs_native
@pytest.mark.slow
def test_rtvc_batched_threads_dense_and_fp16():
    B, T = 2, 120
    cond, u = _cond(B, T, 208, seed=8), draw_uniforms(B, T, seed=8)
    for sparsity in (0.0, 0.9):
        sd = random_state_dict(sparsity, seed=8)
        for value_dtype in (torch.float32, torch.float16):
            model = NativeWaveRNN(sd, value_dtype=value_dtype, threads=2)
            samples, state = model.generate(cond, u)
            oracle = sd if value_dtype == torch.float32 else _half_rounded(sd)
            ref, ref_state = replay_reference(oracle, cond, u, samples)
            assert float((ref == samples).float().mean()) >= 0.99
            assert _max_state_err(state, ref_state) < 1e-4
            if value_dtype == torch.float16:  # against the unrounded fp32 weights: looser
                ref32, ref32_state = replay_reference(sd, cond, u, samples)
                assert _max_state_err(state, ref32_state) < 2e-2
                assert float((ref32 == samples).float().mean()) >= 0.9


@needs_native
def test_bench_vocoder_record():
    rec = bench_vocoder(0.96, 0.05, "cpu-native")
    assert rec["samples"] == 800 and rec["batch"] == 1 and rec["steps"] == 800
    assert rec["samples_per_s"] == pytest.approx(800 / rec["wall_s"])
    assert rec["rtf"] == pytest.approx(rec["wall_s"] / 0.05)
    folded = bench_vocoder(0.96, 0.7, "cpu-native", batched=True)
    assert folded["batch"] == 2 and folded["steps"] == 9600
    with pytest.raises(OptionsError):
        bench_vocoder(0.96, 1.0, "cuda")


@needs_native
@pytest.mark.parametrize("block", [(8, 4), (32, 1)])
def test_other_block_shapes_match_reference(block):
    sd = random_state_dict(0.6, block=block, seed=9, **SMALL)
    B, T = 2, 200
    cond, u = _cond(B, T, SMALL_COND, seed=9), draw_uniforms(B, T, seed=9)
    samples, state = NativeWaveRNN(sd, block=block, precompute="never").generate(cond, u)
    ref, ref_state = reference_generate(sd, cond, u)
    assert torch.equal(samples, ref)
    assert _max_state_err(state, ref_state) < 1e-5


@pytest.mark.parametrize("mode", ["RAW", "MOL"])
def test_agrees_with_the_vocoders_torch_loop(mode):
    """The shared spec, two teams: rtclone.vocoder.WaveRNN.sample_loop vs this package (and the kernel)."""
    vocoder = pytest.importorskip("rtclone.vocoder")
    dims = vocoder.VocoderDims(mode=mode, bits=9, rnn_dims=32, fc_dims=32, feat_dims=8, compute_dims=8,
                               res_out_dims=16, res_blocks=1)  # fmt: skip
    torch.manual_seed(12)
    model = vocoder.WaveRNN(dims).eval()
    sd = {k: v.detach() for k, v in model.state_dict().items()}
    B, T = 2, 300
    cond, u = _cond(B, T, 8 + 16, seed=12), draw_uniforms(B, T, seed=12)
    with torch.no_grad():
        theirs, their_state = model.sample_loop(cond, u)
    ours, our_state = reference_generate(sd, cond, u, mode)
    assert float((theirs - ours).abs().max()) < 1e-5
    assert _max_state_err(their_state, our_state) < 1e-5
    if kcpu.available():
        native, native_state = NativeWaveRNN(sd, mode=mode).generate(cond, u)
        assert float((theirs - native).abs().max()) < 1e-5
        assert _max_state_err(their_state, native_state) < 1e-5


# ---- MoL component choice: the mixture is really sampled (spec CORRECTED 19:50) ----------------
_MIX_LOGITS = (0.3, -0.4, 1.0)  # three live components; the other seven have negligible weight
_MIX_MEANS = (-0.5, 0.1, 0.6)
_MIX_LOG_SCALE = -4.0


def _mix_params() -> torch.Tensor:
    logit_probs = torch.full((10,), -30.0)
    logit_probs[:3] = torch.tensor(_MIX_LOGITS)
    means = torch.linspace(-0.9, 0.9, 10)
    means[:3] = torch.tensor(_MIX_MEANS)
    return torch.cat([logit_probs, means, torch.full((10,), _MIX_LOG_SCALE)])  # (30,)


def _components(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Which of the three means each MoL draw x (N,) came from, given its logistic uniform u (N,)."""
    u2 = u.double().clamp(1e-5, 1 - 1e-5)
    centre = x.double() - torch.exp(torch.tensor(_MIX_LOG_SCALE, dtype=torch.float64)) * (u2.log() - (1 - u2).log())
    return (centre[:, None] - torch.tensor(_MIX_MEANS, dtype=torch.float64)).abs().argmin(dim=1)  # (N,)


@pytest.mark.parametrize("vectorized", [True, False])
def test_mol_sampling_follows_the_mixture(vectorized):
    """20 000 draws of a known 3-component mixture from every CPU backend: components are picked with
    the softmax frequencies (each within 0.02) and x passes a KS test against the mixture CDF."""
    stats = pytest.importorskip("scipy.stats")
    vocoder = pytest.importorskip("rtclone.vocoder")
    params = _mix_params()
    n = 20000
    u = draw_uniforms(1, n, seed=21)  # (1, N, 2)
    draws = {
        "vocoder": vocoder.sample_mol(params.expand(n, 30), u[0]),
        "reference": kcpu.sample_mol(params.expand(n, 30), u[0]),
    }
    if kcpu.available():
        # fc2.bias << 0 makes f2 = relu(...) = 0, so the network outputs fc3.bias = params at every step
        sd = random_state_dict(0.5, mode="MOL", seed=21, **SMALL)
        sd["fc2.bias"] = torch.full_like(sd["fc2.bias"], -1e3)
        sd["fc3.bias"] = params.clone()
        native, _ = NativeWaveRNN(sd, mode="MOL", vectorized=vectorized).generate(_cond(1, n, SMALL_COND, seed=21), u)
        draws["native"] = native[0]
    pi = torch.softmax(torch.tensor(_MIX_LOGITS, dtype=torch.float64), 0).numpy()
    means, scale = torch.tensor(_MIX_MEANS, dtype=torch.float64).numpy(), float(torch.exp(torch.tensor(_MIX_LOG_SCALE)))

    def mixture_cdf(v):
        return (pi[None, :] / (1 + np.exp(-(v[:, None] - means[None, :]) / scale))).sum(axis=1)

    def top_component_cdf(v):
        return 1 / (1 + np.exp(-(v - means[2]) / scale))

    ks = {}
    for name, x in draws.items():
        k = _components(x, u[0, :, 1])
        freq = torch.bincount(k, minlength=3).double().numpy() / n
        assert np.abs(freq - pi).max() < 0.02, (name, freq, pi)
        xs = x.double().numpy()
        ks[name] = stats.kstest(xs, mixture_cdf).pvalue
        assert ks[name] > 1e-3, (name, ks[name])
        assert stats.kstest(xs, top_component_cdf).pvalue < 1e-6  # the test tells the mixture from its argmax
    # the backends share the uniforms, so they draw the same values (a CDF-boundary flip is allowed)
    for name, x in draws.items():
        assert float(((x - draws["vocoder"]).abs() < 1e-5).double().mean()) >= 0.999, name
