"""Triton kernels (rtclone.kernels.triton) against their plain-torch references.

Runs on the CPU in triton's interpreter: TRITON_INTERPRET must be set before the kernel modules
are imported (``@triton.jit`` decides at decoration time), so it is set here at import. Sizes are
tiny because the interpreter runs programs one after another. GPU-only checks carry
``requires_cuda``.
"""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import subprocess  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from scipy import stats  # noqa: E402

from rtclone.errors import BackendUnavailableError, InputShapeError, OptionsError  # noqa: E402
from rtclone.sparse import pack  # noqa: E402

pytest.importorskip("triton")

import rtclone.kernels.triton as tk  # noqa: E402


def _skip_reason() -> str | None:
    if torch.cuda.is_available() and not tk.interpreting():
        return None
    if not tk.interpreting():
        return f"TRITON_INTERPRET={os.environ.get('TRITON_INTERPRET')!r} and no CUDA device"
    from triton.runtime.interpreter import InterpretedFunction

    kernels = (("bsr_gemv", "_bsr_matmul_kernel"), ("sampling", "_sample_kernel"), ("wavernn_step", "_wavernn_kernel"))
    for mod, fn in kernels:
        loaded = sys.modules.get(f"rtclone.kernels.triton.{mod}")
        if loaded is not None and not isinstance(getattr(loaded, fn), InterpretedFunction):
            return f"rtclone.kernels.triton.{mod} was imported before TRITON_INTERPRET=1 was set (run this file alone)"
    return None


pytestmark = [
    pytest.mark.triton,
    pytest.mark.usefixtures("one_thread"),  # conftest: one torch thread for the module
    pytest.mark.skipif(_skip_reason() is not None, reason=str(_skip_reason())),
]


def _sparse(rows: int, cols: int, block: tuple[int, int], density: float, seed: int) -> torch.Tensor:
    """A dense matrix whose (bh, bw) blocks are kept with probability ``density``; block-row 1 empty."""
    g = torch.Generator().manual_seed(seed)
    bh, bw = block
    keep = torch.rand(rows // bh, cols // bw, generator=g) < density
    keep[1] = False
    mask = keep.repeat_interleave(bh, 0).repeat_interleave(bw, 1)
    return torch.randn(rows, cols, generator=g) * mask


# ---- package surface ---------------------------------------------------------------------------
def test_import_without_triton_reports_unavailable():
    code = (
        "import sys; sys.modules['triton'] = None\n"
        "import importlib.util as u\n"
        "u.find_spec = (lambda f: lambda n, *a: None if n == 'triton' else f(n, *a))(u.find_spec)\n"
        "import rtclone.kernels.triton as t\n"
        "from rtclone.errors import BackendUnavailableError\n"
        "assert not t.available() and 'triton' in t.unavailable_reason()\n"
        "try:\n    t.TritonWaveRNN\nexcept BackendUnavailableError:\n    print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "ok", out.stderr


def test_available_here():
    assert tk.available() and tk.unavailable_reason() is None


# ---- block-sparse GEMV / GEMM --------------------------------------------------------------------
@pytest.mark.parametrize("block", [(16, 1), (8, 4), (4, 4)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_bsr_matmul_matches_reference(block, dtype):
    dense = _sparse(48, 40, block, 0.35, seed=block[0] * 10 + block[1])
    w = pack(dense, block, dtype)
    g = torch.Generator().manual_seed(1)
    bias = torch.randn(48, generator=g)
    exact = dense.to(dtype).double()  # the stored values, summed in float64
    for batch in (1, 7, 64):
        x = torch.randn(batch, 40, generator=g)
        y = tk.bsr_matmul(w, x, bias)
        assert y.shape == (batch, 48) and y.dtype == torch.float32
        torch.testing.assert_close(y, tk.bsr_matmul_reference(w, x, bias), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(y.double(), x.double() @ exact.T + bias.double(), rtol=1e-5, atol=1e-5)
        assert torch.all(y[:, block[0] : 2 * block[0]] == bias[block[0] : 2 * block[0]])  # empty block-row


def test_bsr_matmul_vector_fp16_input_and_empty_matrix():
    dense = _sparse(32, 24, (16, 1), 0.5, seed=3)
    w = pack(dense, (16, 1))
    x = torch.randn(24)
    y = tk.bsr_matmul(w, x.half())
    assert y.shape == (32,)
    torch.testing.assert_close(y, dense @ x.half().float(), rtol=1e-5, atol=1e-5)
    empty = pack(torch.zeros(32, 24), (16, 1))
    assert empty.nnz_blocks == 0
    assert torch.equal(tk.bsr_matmul(empty, torch.randn(3, 24)), torch.zeros(3, 32))


@pytest.mark.parametrize("block", [(16, 1), (16, 4), (32, 2)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_bsr_matmul_dot_path_matches_reference(block, dtype):
    dense = _sparse(64, 48, block, 0.3, seed=block[1] + 7)
    w = pack(dense, block, dtype)
    g = torch.Generator().manual_seed(2)
    bias = torch.randn(64, generator=g)
    for batch in (16, 40):
        x = torch.randn(batch, 48, generator=g)
        xr = x.half().float() if dtype == torch.float16 else x  # fp16 values take fp16 inputs in tl.dot
        y = tk.bsr_matmul(w, x, bias, use_dot=True)
        torch.testing.assert_close(y, tk.bsr_matmul_reference(w, xr, bias), rtol=1e-5, atol=1e-5)
    with pytest.raises(InputShapeError):
        tk.bsr_matmul(w, torch.randn(8, 48), use_dot=True)  # tl.dot needs M = B >= 16


def test_bsr_matmul_rejects_bad_inputs():
    w = pack(_sparse(32, 24, (16, 1), 0.5, seed=4), (16, 1))
    with pytest.raises(InputShapeError):
        tk.bsr_matmul(w, torch.randn(2, 25))
    with pytest.raises(InputShapeError):
        tk.bsr_matmul(w, torch.randn(2, 24), bias=torch.randn(31))
    with pytest.raises(InputShapeError):
        tk.bsr_matmul(pack(torch.randn(32, 24), (16, 1), torch.bfloat16), torch.randn(2, 24))


# ---- sampling ------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode,n_out", [("RAW", 512), ("RAW", 16), ("MOL", 30)])
def test_sample_with_uniforms_equals_reference(mode, n_out):
    g = torch.Generator().manual_seed(n_out)
    logits = torch.randn(300, n_out, generator=g) * 2
    u = torch.rand(300, 2, generator=g)
    labels, x = tk.sample(logits, mode, uniforms=u)
    ref_labels, ref_x = tk.sample_reference(logits, u, mode)
    assert labels.dtype == torch.int32 and torch.equal(labels, ref_labels)
    if mode == "RAW":
        assert torch.equal(x, ref_x)
    else:
        torch.testing.assert_close(x, ref_x, rtol=0, atol=2e-6)
        assert len(set(labels.tolist())) > 1  # different rows really pick different components


@pytest.mark.parametrize("mode,n_out", [("RAW", 512), ("MOL", 30)])
def test_philox_sampling_is_reproducible(mode, n_out):
    logits = torch.randn(200, n_out, generator=torch.Generator().manual_seed(2))
    a = tk.sample(logits, mode, seed=1234, offset=10)
    b = tk.sample(logits, mode, seed=1234, offset=10)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])  # bit-exact between runs
    other_seed = tk.sample(logits, mode, seed=1235, offset=10)
    other_offset = tk.sample(logits, mode, seed=1234, offset=12)
    assert (a[1] != other_seed[1]).float().mean() > 0.5 and (a[1] != other_offset[1]).float().mean() > 0.5
    # the kernel draws exactly the numbers philox_uniforms reports
    ref = tk.sample_reference(logits, tk.philox_uniforms(1234, (200, 2), offset=10), mode)
    assert torch.equal(a[0], ref[0])
    torch.testing.assert_close(a[1], ref[1], rtol=0, atol=2e-6)


def test_philox_uniforms_are_uniform():
    u = tk.philox_uniforms(7, (20000,))
    assert u.dtype == torch.float32 and float(u.min()) >= 0.0 and float(u.max()) < 1.0
    assert stats.kstest(u.numpy(), "uniform").pvalue > 1e-3
    assert abs(float(np.corrcoef(u[:-1].numpy(), u[1:].numpy())[0, 1])) < 0.03  # consecutive counters


def test_raw_sampling_distribution_is_softmax():
    n, draws = 512, 20000
    logits = torch.randn(n, generator=torch.Generator().manual_seed(3)) * 0.5
    labels, x = tk.sample(logits.expand(draws, n), "RAW", seed=99)
    counts = np.bincount(labels.numpy(), minlength=n)
    p = torch.softmax(logits.double(), 0).numpy()
    assert stats.chisquare(counts, draws * p).pvalue > 1e-3
    assert stats.chisquare(counts, np.full(n, draws / n)).pvalue < 1e-6  # the test has power
    assert torch.equal(x, 2 * labels.float() / (n - 1) - 1)


def _mol_params() -> torch.Tensor:
    logit_probs = torch.tensor([0.5, -1.0, 0.0, 1.0, -0.5, 0.2, -2.0, 0.3, 0.8, -0.3])
    means = torch.linspace(-0.6, 0.6, 10)
    log_scales = torch.full((10,), -3.0)
    return torch.cat([logit_probs, means, log_scales])  # (30,)


def test_mol_sampling_distribution_is_the_mixture():
    draws = 20000
    params = _mol_params()
    k, x = tk.sample(params.expand(draws, 30), "MOL", seed=5)
    pi = torch.softmax(params[:10].double(), 0).numpy()
    assert stats.chisquare(np.bincount(k.numpy(), minlength=10), draws * pi).pvalue > 1e-3
    means, scales = params[10:20].double().numpy(), np.exp(params[20:30].double().numpy())

    def cdf(v: np.ndarray) -> np.ndarray:
        return (pi[None, :] / (1 + np.exp(-(v[:, None] - means[None, :]) / scales[None, :]))).sum(axis=1)

    assert stats.kstest(x.double().numpy(), cdf).pvalue > 1e-3
    one_logistic = lambda v: 1 / (1 + np.exp(-(v - means[3]) / scales[3]))  # noqa: E731
    assert stats.kstest(x.double().numpy(), one_logistic).pvalue < 1e-6  # the test has power


def test_sample_rejects_bad_arguments():
    logits = torch.randn(4, 30)
    with pytest.raises(OptionsError):
        tk.sample(logits, "MOL")  # neither uniforms nor seed
    with pytest.raises(OptionsError):
        tk.sample(logits, "LINEAR", seed=1)
    with pytest.raises(InputShapeError):
        tk.sample(torch.randn(4, 31), "MOL", seed=1)
    with pytest.raises(InputShapeError):
        tk.sample(logits, "RAW", uniforms=torch.rand(4, 3))


# ---- the persistent WaveRNN kernel ---------------------------------------------------------------
SMALL = dict(rnn_dims=32, fc_dims=32, feat_dims=8, aux_dims=4)


def _loop_inputs(batch: int, steps: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    from rtclone.kernels.cpu.reference import draw_uniforms

    cond = torch.randn(batch, steps, 8 + 4 * 4, generator=torch.Generator().manual_seed(seed))  # (B, T, 24)
    return cond, draw_uniforms(batch, steps, seed)


def _state_dict(mode: str, bits: int, block: tuple[int, int], sparsity: float, seed: int) -> dict[str, torch.Tensor]:
    from rtclone.kernels.cpu.bench import random_state_dict

    sd = random_state_dict(sparsity, block=block, mode=mode, bits=bits, seed=seed, **SMALL)
    for k in ("rnn1.weight_hh_l0", "rnn2.weight_hh_l0", "fc3.weight"):
        sd[k] = sd[k] * 3  # livelier recurrences and sharper output distributions than 1/sqrt(fan_in)
    return sd


@pytest.mark.parametrize(
    "mode,bits,block,dtype",
    [("RAW", 4, (16, 1), torch.float32), ("MOL", 9, (4, 4), torch.float32), ("RAW", 4, (8, 4), torch.float16)],
)
def test_wavernn_matches_reference_and_continues_streams(mode, bits, block, dtype):
    sd = _state_dict(mode, bits, block, sparsity=0.5, seed=11)
    batch, steps = 3, 8
    cond, u = _loop_inputs(batch, steps, seed=12)
    kernel = tk.TritonWaveRNN(sd, mode=mode, bits=bits, block=block, value_dtype=dtype)
    assert 0.3 < kernel.densities["rnn1.weight_hh_l0"] < 0.7
    half = steps // 2
    s1, state = kernel.generate(cond[:, :half], u[:, :half])
    s2, (x, h1, h2) = kernel.generate(cond[:, half:], u[:, half:], state)
    samples = torch.cat([s1, s2], dim=1)
    ref_sd = dict(sd)
    if dtype == torch.float16:  # the reference sees the weights the kernel stores
        ref_sd.update({k: v.half().float() for k, v in sd.items() if k.endswith("weight") or "weight_" in k})
    ref, (rx, rh1, rh2) = tk.wavernn_reference(ref_sd, cond, u, mode, bits)
    assert samples.shape == (batch, steps)
    if mode == "RAW":
        assert torch.equal(samples, ref)  # labels identical with the same uniforms
        assert len(set(samples.flatten().tolist())) > 3
    else:
        torch.testing.assert_close(samples, ref, rtol=0, atol=1e-4)
    torch.testing.assert_close(x, rx, rtol=0, atol=1e-4)
    torch.testing.assert_close(h1, rh1, rtol=0, atol=1e-4)
    torch.testing.assert_close(h2, rh2, rtol=0, atol=1e-4)
    assert float(h2.abs().max()) > 0.05  # the state really moved


def test_wavernn_philox_is_reproducible_and_matches_philox_uniforms():
    sd = _state_dict("RAW", 4, (16, 1), sparsity=0.5, seed=21)
    batch, steps = 2, 5
    cond, _ = _loop_inputs(batch, steps, seed=22)
    kernel = tk.TritonWaveRNN(sd, mode="RAW", bits=4)
    a, (xa, h1a, _) = kernel.generate(cond, None, seed=77)
    b, (xb, h1b, _) = kernel.generate(cond, None, seed=77)
    assert torch.equal(a, b) and torch.equal(h1a, h1b)
    c, _ = kernel.generate(cond, tk.philox_uniforms(77, (batch, steps, 2)))
    assert torch.equal(a, c)


def test_wavernn_rejects_bad_arguments():
    sd = _state_dict("RAW", 4, (16, 1), sparsity=0.5, seed=31)
    with pytest.raises(OptionsError):
        tk.TritonWaveRNN(sd, mode="RAW", bits=4, value_dtype=torch.bfloat16)
    with pytest.raises(OptionsError):
        tk.TritonWaveRNN(sd, mode="SPLIT", bits=4)
    kernel = tk.TritonWaveRNN(sd, mode="RAW", bits=4)
    cond, u = _loop_inputs(2, 3, seed=32)
    with pytest.raises(OptionsError):
        kernel.generate(cond, None)
    with pytest.raises(InputShapeError):
        kernel.generate(cond[..., :-1], u)
    with pytest.raises(InputShapeError):
        kernel.generate(cond, u[:, :2])
    samples, (x, h1, h2) = kernel.generate(cond[:, :0], u[:, :0])  # zero steps: the state is unchanged
    assert samples.shape == (2, 0) and torch.equal(h1, torch.zeros(2, 32)) and torch.equal(x, torch.zeros(2))


# ---- compiled (not interpreted) for an NVIDIA target, without a GPU ----------------------------------
_COMPILE = """
import os, sys
os.environ.pop("TRITON_INTERPRET", None)
os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from rtclone.kernels.triton import bsr_gemv, sampling, wavernn_step

def build(fn, sig, consts):
    sig = {n: "constexpr" if n in consts else sig[n] for n in fn.arg_names}
    k = triton.compile(ASTSource(fn, sig, consts), target=GPUTarget("cuda", 80, 32))
    assert k.asm["cubin"], fn.__name__
    print(fn.__name__)

f32, i32 = "*fp32", "i32"
which = sys.argv[1]
if which == "small":
    sig = dict(vals_ptr="*fp16", col_ptr="*i32", rowptr_ptr="*i32", max_slots=i32, x_ptr=f32, x_stride=i32, n_in=i32,
               bias_ptr=f32, y_ptr=f32, y_stride=i32, n_rows=i32, B=i32)
    build(bsr_gemv._bsr_matmul_kernel, sig, dict(HAS_BIAS=True, BH=16, BW=1, BLOCK_B=4, ROWS=16, SLOTS=16))
    sig = dict(vals_ptr="*fp16", col_ptr="*i32", rowptr_ptr="*i32", x_ptr=f32, x_stride=i32, bias_ptr=f32,
               y_ptr=f32, y_stride=i32, B=i32)
    build(bsr_gemv._bsr_matmul_dot_kernel, sig, dict(HAS_BIAS=True, FP16=True, BH=16, BW=1, BLOCK_B=16, SLOTS=16))
    sig = dict(logits_ptr=f32, stride=i32, B=i32, n_out=i32, u_ptr=f32, seed="i64", offset=i32, label_ptr="*i32",
               x_ptr=f32)
    build(sampling._sample_kernel, sig, dict(MOL=True, PHILOX=True, BLOCK_B=16, NP=32))
else:
    sig = {}
    for m in "IABCDEFG":
        sig.update({f"w{m}": "*fp16", f"c{m}": "*i32", f"p{m}": "*i32", f"m{m}": i32, f"b{m}": f32})
    for n in ("cond", "u_ptr", "out_ptr", "x_buf", "h1_buf", "h2_buf", "i_buf", "x1_buf", "x2_buf", "f1_buf",
              "f2_buf", "logit_buf"):
        sig[n] = f32
    for n in ("cond_sb", "cond_st", "B", "T", "R", "FC", "FEAT", "AUX", "N_OUT"):
        sig[n] = i32
    sig["seed"] = "i64"
    build(wavernn_step._wavernn_kernel, sig, dict(MOL=True, PHILOX=True, BH=8, BW=4, BLOCK_B=2, ROWS=16, SLOTS=16, NP=32))
"""


def _compile_for_sm80(which: str) -> None:
    out = subprocess.run([sys.executable, "-c", _COMPILE, which], capture_output=True, text=True, timeout=600)
    if "ptxas" in out.stderr and out.returncode:
        pytest.skip(f"no usable ptxas: {out.stderr[-300:]}")
    assert out.returncode == 0, out.stderr[-3000:]


@pytest.mark.slow
def test_gemv_and_sampling_kernels_compile_for_sm80():
    """The interpreter skips triton's compiler; this catches what only the compiler rejects."""
    _compile_for_sm80("small")


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("RTCLONE_TRITON_COMPILE_ALL") != "1", reason="~40 s; set RTCLONE_TRITON_COMPILE_ALL=1")
def test_wavernn_kernel_compiles_for_sm80():
    _compile_for_sm80("wavernn")


# ---- GPU only ------------------------------------------------------------------------------------
@pytest.mark.requires_cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")
@pytest.mark.parametrize("block", [(16, 1), (16, 16)])
def test_bsr_matmul_on_gpu_rtvc_size(block):
    dense = _sparse(1536, 512, block, 0.05, seed=41)
    w = pack(dense, block)
    w = type(w)(w.shape, w.block, w.values.cuda(), w.col_idx.cuda(), w.row_ptr.cuda())
    x = torch.randn(64, 512, device="cuda")
    exact = x @ dense.cuda().T
    torch.testing.assert_close(tk.bsr_matmul(w, x, use_dot=False), exact, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(tk.bsr_matmul(w, x, use_dot=True), exact, rtol=1e-2, atol=1e-2)  # TF32 inputs


@pytest.mark.requires_cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")
def test_wavernn_rtvc_dims_on_gpu():
    from rtclone.kernels.cpu.bench import random_state_dict
    from rtclone.kernels.cpu.reference import draw_uniforms

    sd = random_state_dict(0.95, seed=51)
    cond = torch.randn(4, 64, 208, generator=torch.Generator().manual_seed(52))
    u = draw_uniforms(4, 64, 53)
    samples, _ = tk.TritonWaveRNN(sd).generate(cond.cuda(), u.cuda())
    ref, _ = tk.wavernn_reference(sd, cond, u)
    assert torch.equal(samples.cpu(), ref)  # a label flip would need a uniform within ~1e-6 of a CDF step
