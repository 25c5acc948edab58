"""Block-sparse pruning: schedule, exact block sparsity, packed matvec == dense masked matvec."""

from __future__ import annotations

import pytest
import torch

from rtclone.checkpoints import read_checkpoint
from rtclone.errors import InputShapeError, OptionsError
from rtclone.sparse import (
    PRUNABLE,
    PruneSchedule,
    block_mask,
    block_sparsity,
    measure_sparsity,
    pack,
    prune_checkpoint,
    prune_model,
)
from rtclone.vocoder import VocoderDims, WaveRNN

TINY = VocoderDims(rnn_dims=32, fc_dims=32, res_blocks=1, compute_dims=16, res_out_dims=32)


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one torch thread for the module


def test_schedule_follows_kalchbrenner():
    s = PruneSchedule(target=0.9, start=100, end=1100, every=50)
    assert s.sparsity(0) == s.sparsity(100) == 0.0
    assert s.sparsity(1100) == s.sparsity(5000) == 0.9
    assert s.sparsity(600) == pytest.approx(0.9 * (1 - 0.5**3))
    values = [s.sparsity(k) for k in range(100, 1101, 50)]
    assert values == sorted(values) and len(set(values)) == len(values)
    due = [k for k in range(0, 2000) if s.due(k)]
    assert due == list(range(150, 1101, 50))
    odd = PruneSchedule(target=0.5, start=0, end=10, every=4)
    assert [k for k in range(20) if odd.due(k)] == [4, 8, 10]
    for kw in ({"target": 1.0}, {"target": -0.1}, {"start": 5, "end": 5}, {"every": 0}, {"block": (0, 1)}):
        with pytest.raises(OptionsError):
            PruneSchedule(**kw)


@pytest.mark.parametrize("block", [(16, 1), (8, 4), (4, 4), (1, 1)])
@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.8, 0.96])
def test_block_mask_exact_and_by_magnitude(block, sparsity):
    w = torch.randn(64, 32, generator=torch.Generator().manual_seed(3))
    mask = block_mask(w, block, sparsity)
    bh, bw = block
    blocks = mask.reshape(64 // bh, bh, 32 // bw, bw)
    assert torch.all(blocks.all(dim=(1, 3)) == blocks.any(dim=(1, 3)))  # whole blocks only
    n_blocks = (64 // bh) * (32 // bw)
    dropped = ~blocks.any(dim=(1, 3))
    assert int(dropped.sum()) == round(sparsity * n_blocks)
    scores = w.abs().reshape(64 // bh, bh, 32 // bw, bw).sum(dim=(1, 3))
    if 0 < int(dropped.sum()) < n_blocks:
        assert scores[dropped].max() <= scores[~dropped].min()
    assert block_sparsity(w * mask, block) == pytest.approx(int(dropped.sum()) / n_blocks)


@pytest.mark.parametrize("block", [(16, 1), (8, 4), (4, 4)])
def test_packed_matvec_equals_dense_masked_matvec_exactly(block):
    g = torch.Generator().manual_seed(7)
    # Small integers: every partial sum is exact in float32, so any summation order gives equal bits.
    w = torch.randint(-8, 9, (96, 64), generator=g).float()
    x = torch.randint(-8, 9, (64,), generator=g).float()
    xs = torch.randint(-8, 9, (64, 5), generator=g).float()
    masked = w * block_mask(w, block, 0.75)
    packed = pack(masked, block)
    assert packed.nnz_blocks == round(0.25 * (96 // block[0]) * (64 // block[1]))
    assert torch.equal(packed.to_dense(), masked)
    assert torch.equal(packed.matvec(x), masked @ x)
    assert torch.equal(packed.matvec(xs), masked @ xs)
    wf = torch.randn(96, 64, generator=g) * block_mask(torch.randn(96, 64, generator=g), block, 0.9)
    xf = torch.randn(64, generator=g)
    assert torch.allclose(pack(wf, block).matvec(xf), wf @ xf, atol=1e-5)
    assert torch.allclose(pack(wf, block, torch.float16).matvec(xf), wf.half().float() @ xf, atol=1e-4)


def test_prune_model_keeps_biases_and_upsample_dense():
    torch.manual_seed(0)
    model = WaveRNN(TINY)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    achieved = prune_model(model, 0.75, (8, 1))
    assert set(achieved) == set(PRUNABLE)
    sd = model.state_dict()
    for name in PRUNABLE:
        rows, cols = sd[name].shape
        n_blocks = rows // 8 * cols
        assert achieved[name] == pytest.approx(round(0.75 * n_blocks) / n_blocks)
        kept = sd[name] != 0
        assert torch.equal(sd[name][kept], before[name][kept])  # surviving weights untouched
    for name, value in sd.items():
        if name not in PRUNABLE:
            assert torch.equal(value, before[name]), name
    measured = measure_sparsity(model, (8, 1))
    assert all(measured[n] == pytest.approx(achieved[n]) for n in PRUNABLE)
    assert measure_sparsity(model)["total"] == pytest.approx(measured["total"], abs=1e-6)


def test_untileable_matrices():
    torch.manual_seed(0)
    model = WaveRNN(TINY)  # I.weight is (32, 89): 4-wide blocks do not tile it
    achieved = prune_model(model, 0.5, (4, 4))
    assert "I.weight" not in achieved and len(achieved) == len(PRUNABLE) - 1
    assert float((model.I.weight == 0).float().mean()) == 0.0
    with pytest.raises(InputShapeError):
        prune_model(model, 0.5, (4, 4), names=("I.weight",))
    with pytest.raises(InputShapeError):
        prune_model(model, 0.5, (16, 1), names=("no.such.weight",))


def test_prune_checkpoint_rtvc_file(tmp_path):
    torch.manual_seed(0)
    src = tmp_path / "rtvc_vocoder.pt"
    torch.save({"model_state": WaveRNN(TINY).state_dict(), "optimizer_state": {}}, src)
    report = prune_checkpoint(str(src), str(tmp_path / "pruned.pt"), 0.9, (16, 1))
    assert report["input_format"] == "rtvc" and report["block"] == [16, 1]
    ckpt = read_checkpoint(tmp_path / "pruned.pt", expect_kind="vocoder")
    assert ckpt.format == "rtclone" and ckpt.dims == TINY
    for name in PRUNABLE:
        w = ckpt.model_state[name]
        n_blocks = w.shape[0] // 16 * w.shape[1]
        assert block_sparsity(w, (16, 1)) == pytest.approx(round(0.9 * n_blocks) / n_blocks)
    assert report["block_sparsity"] == pytest.approx(0.9, abs=0.01)
    assert report["element_sparsity"] == pytest.approx(report["block_sparsity"], abs=1e-6)
    with pytest.raises(OptionsError):
        prune_checkpoint(str(src), str(tmp_path / "x.pt"), 1.0, (16, 1))
