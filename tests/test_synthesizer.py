"""Tacotron synthesizer: RTVC layout, round trips, offline vs streaming, guards and bad input."""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from rtclone import checkpoints
from rtclone.errors import AttentionFailureError, InputShapeError, MaxLengthError, OptionsError, TextError
from rtclone.synthesizer import (SynthesizerDims, StreamInfo, Tacotron, TacotronOptions, encode_texts, quantize_decoder_int8,
                                 stream, synthesize)

RTVC_FORMATS = Path(__file__).resolve().parents[2] / "shared" / "rtvc-formats.md"
TEXT = "The quick brown fox jumps over the lazy dog."
# Free-running decoding of a random model: no stop token, no attention checks, stop at the guard.
FREE = TacotronOptions(stop_threshold=None, detect_attention_failure=False, on_max_length="truncate",
                       max_decoder_steps=40)

# Facts about RTVC's synthesizer.pt (rtvc-formats.md): 170 tensors, 30 880 082 values, and some shapes.
RTVC_N_TENSORS, RTVC_N_VALUES = 170, 30_880_082
RTVC_SOME_SHAPES = {
    "step": (1,), "stop_threshold": (), "decoder.r": (),
    "encoder.embedding.weight": (66, 512),
    "encoder.cbhg.conv_project1.conv.weight": (256, 1280, 3),
    "encoder.cbhg.rnn.weight_hh_l0_reverse": (384, 128),
    "encoder_proj.weight": (128, 512),
    "decoder.attn_net.conv.weight": (32, 1, 31),
    "decoder.attn_rnn.weight_ih": (384, 768),
    "decoder.rnn_input.weight": (1024, 640),
    "decoder.res_rnn2.weight_hh": (4096, 1024),
    "decoder.mel_proj.weight": (1600, 1024),
    "decoder.stop_proj.weight": (1, 1536),
    "postnet.conv_project2.conv.weight": (80, 512, 3),
    "postnet.pre_highway.weight": (512, 80),
    "postnet.rnn.weight_ih_l0": (768, 512),
    "post_proj.weight": (80, 512),
}


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one torch thread for the module


def _emb(n: int = 1, seed: int = 0) -> np.ndarray:
    e = np.random.default_rng(seed).standard_normal((n, 256)).astype(np.float32)
    return e / np.linalg.norm(e, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def tiny() -> Tacotron:
    torch.manual_seed(0)
    return Tacotron(SynthesizerDims.tiny()).eval()


@pytest.fixture(scope="module")
def rtvc_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return Tacotron(SynthesizerDims()).state_dict()


def test_rtvc_layout_embedded_facts(rtvc_state):
    assert len(rtvc_state) == RTVC_N_TENSORS
    assert sum(t.numel() for t in rtvc_state.values()) == RTVC_N_VALUES
    for name, shape in RTVC_SOME_SHAPES.items():
        assert tuple(rtvc_state[name].shape) == shape, name


def test_rtvc_layout_matches_formats_doc(rtvc_state):
    if not RTVC_FORMATS.is_file():
        pytest.skip(f"{RTVC_FORMATS} not present")
    section = RTVC_FORMATS.read_text().split("## synthesizer (model_state)")[1].split("\n## ")[0]
    listed = {n: tuple(int(x) for x in s.split(",") if x.strip())
              for n, s in re.findall(r"- `([^`]+)` \(([^)]*)\)", section)}
    assert len(listed) == RTVC_N_TENSORS
    assert {k: tuple(v.shape) for k, v in rtvc_state.items()} == listed


def test_dims_from_rtvc_state_dict(rtvc_state):
    assert SynthesizerDims.from_rtvc_state_dict(rtvc_state) == SynthesizerDims()
    for dims in (SynthesizerDims.small(), SynthesizerDims.tiny()):
        assert SynthesizerDims.from_rtvc_state_dict(Tacotron(dims).state_dict()) == dims


def test_rtvc_checkpoint_loads_strictly_and_round_trips(tmp_path, rtvc_state):
    # an RTVC-style training checkpoint (plain dict, model_state + optimizer_state)
    sd = dict(rtvc_state)
    sd["decoder.r"] = torch.tensor(2, dtype=torch.int)
    sd["step"] = torch.tensor([295_000])
    ckpt = checkpoints.parse_checkpoint({"model_state": sd, "optimizer_state": {}})
    assert (ckpt.kind, ckpt.format, ckpt.dims) == ("synthesizer", "rtvc", SynthesizerDims())
    assert ckpt.meta["step"] == 295_000
    model = checkpoints.build_model(ckpt)
    for k, v in model.state_dict().items():
        assert torch.equal(v, sd[k]), k
    # and back out to rtclone's format, then in again: same weights, same output
    path = checkpoints.save_model(model, tmp_path / "syn.pt", "synthesizer")
    again = checkpoints.load_model(path, "synthesizer")
    assert again.dims == model.dims and again.r == 2
    opts = dataclasses.replace(FREE, max_decoder_steps=5)
    a = synthesize(model, ["Hi."], _emb(), opts)[0][0]
    b = synthesize(again, ["Hi."], _emb(), opts)[0][0]
    assert a.shape == (80, 10)
    np.testing.assert_array_equal(a, b)


def test_forward_teacher_forcing_shapes(tiny):
    tiny.set_r(3)
    try:
        chars = torch.tensor([[5, 6, 7, 1], [8, 9, 1, 0]])
        mels = torch.randn(2, 80, 13)
        mel, post, attn, stop = tiny(chars, mels, torch.from_numpy(_emb(2)))
        assert mel.shape == post.shape == (2, 80, 13)
        assert attn.shape == (2, math.ceil(13 / 3), 4) and stop.shape == (2, 13)
        np.testing.assert_allclose(attn.sum(-1).detach().numpy(), 1.0, atol=1e-5)
        assert float(attn[1, :, 3].detach().max()) == 0.0  # padding gets no attention
    finally:
        tiny.set_r(2)


@pytest.mark.parametrize("fused_lstm", ["0", "1"], ids=["torch_lstm", "c_lstm"])
@pytest.mark.parametrize("r", [1, 3, 4])
@pytest.mark.parametrize("attention", ["0", "1"], ids=["autograd_attention", "attention_loop"])
def test_split_teacher_forced_decoder_equals_the_step_loop(r, fused_lstm, attention, monkeypatch):
    """Decoder.teacher_forced (LSTMs over whole sequences, in torch's LSTM or the C layer when built;
    the attention path under autograd or in rtclone.attention_train) gives the step loop's outputs and
    gradients, in training mode (prenet dropout drawn in the same order), with padding and T not a
    multiple of r."""
    monkeypatch.setenv("RTCLONE_FUSED_LSTM", fused_lstm)
    monkeypatch.setenv("RTCLONE_FUSED_ATTENTION", attention)
    torch.manual_seed(0)
    model = Tacotron(SynthesizerDims.tiny()).train()
    model.set_r(r)
    chars = torch.tensor([[5, 6, 7, 8, 9, 1], [8, 9, 10, 1, 0, 0]])
    mels, spk = torch.randn(2, 80, 22).clamp(-4, 4), torch.from_numpy(_emb(2))
    runs = {}
    for split in (False, True):
        model.split_decoder = split
        model.zero_grad()
        mel, post, attn, stop = model(chars, mels, spk, torch.Generator().manual_seed(3))
        ((mel - mels).abs().mean() + (post - mels).square().mean() + stop.sigmoid().mean() + attn[:, :, 0].mean()).backward()
        runs[split] = [mel, post, attn, stop] + [p.grad for p in model.parameters()]
    model.split_decoder = True
    assert all(g is not None for g in runs[True][4:])
    for a, b in zip(runs[False], runs[True]):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
    # and the draws matter: another seed gives other outputs on both paths
    other = model(chars, mels, spk, torch.Generator().manual_seed(4))[0]
    assert (other - runs[True][0]).abs().max() > 1e-3


@pytest.mark.parametrize("fused_lstm", ["0", "1"], ids=["torch_lstm", "c_lstm"])
def test_zoneout_draws_and_sums_match_the_step_loop(fused_lstm, monkeypatch):
    """Zoneout (RTVC's 0.1 on the residual LSTMs' states): the split decoder (C layer) and the step loop
    draw the same masks in the same order and give the same outputs and gradients; without the C layer
    the pass falls back to the step loop. Zoneout changes training passes only, never eval ones."""
    monkeypatch.setenv("RTCLONE_FUSED_LSTM", fused_lstm)
    torch.manual_seed(0)
    model = Tacotron(SynthesizerDims.tiny()).train()
    model.set_r(2)
    chars = torch.tensor([[5, 6, 7, 8, 9, 1], [8, 9, 10, 1, 0, 0]])
    mels, spk = torch.randn(2, 80, 15).clamp(-4, 4), torch.from_numpy(_emb(2))

    def run(split: bool, zoneout: float):
        model.split_decoder, model.decoder.zoneout = split, zoneout
        model.zero_grad()
        mel, post, attn, stop = model(chars, mels, spk, torch.Generator().manual_seed(3))
        (mel.abs().mean() + post.square().mean() + stop.sigmoid().mean()).backward()
        return [mel, post, attn, stop] + [p.grad.clone() for p in model.parameters()]

    assert model.decoder.can_split(torch.zeros(1)) is True  # zoneout off
    model.decoder.zoneout = 0.1
    assert model.decoder.can_split(torch.zeros(1)) is (fused_lstm == "1")
    loop, split, plain = run(False, 0.1), run(True, 0.1), run(True, 0.0)
    for a, b in zip(loop, split):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
    assert (loop[0] - plain[0]).abs().max() > 1e-4  # the masks did act
    model.eval()
    with torch.no_grad():
        model.decoder.zoneout = 0.5
        a = model(chars, mels, spk, torch.Generator().manual_seed(3))[0]
        model.decoder.zoneout = 0.0
        torch.testing.assert_close(model(chars, mels, spk, torch.Generator().manual_seed(3))[0], a, rtol=0, atol=0)
    model.train()


@pytest.fixture
def ss_case(tiny):
    """Two utterances at r = 3 (restored to 2 after): chars, speaker embeddings, two sets of target mels."""
    tiny.set_r(3)
    try:
        yield (torch.tensor([[5, 6, 7, 8, 1], [8, 9, 10, 1, 0]]), torch.from_numpy(_emb(2)),
               torch.randn(2, 80, 30), torch.randn(2, 80, 30))
    finally:
        tiny.set_r(2)


def test_parallel_scheduled_sampling_feeds_a_first_passs_frames(tiny, ss_case):
    """own_parallel: the frames fed are those a first teacher-forced pass (no gradients) predicted,
    mixed with the targets per utterance and frame: p = 1 feeds only the first pass's frames, so
    it still reads the targets (through that pass), unlike the sequential p = 1; p = 0 is teacher forcing."""
    chars, spk, mels_a, mels_b = ss_case

    def run(mels, p, seed=0):
        return tiny(chars, mels, spk, torch.Generator().manual_seed(seed), own_frames=p, own_parallel=True)[0]

    with torch.no_grad():
        forced = tiny(chars, mels_a, spk, torch.Generator().manual_seed(0))[0]
        torch.testing.assert_close(run(mels_a, 0.0), forced, rtol=0, atol=0)
        g = torch.Generator().manual_seed(0)  # the same draws in the same order, by hand
        memory, keys = tiny.encode(chars, spk, g)
        first = tiny._forced(memory, keys, chars != 0, mels_a, g)[0]
        torch.rand(2, 1, 30, generator=g)
        expected = tiny._forced(memory, keys, chars != 0, first, g)[0]
        full = run(mels_a, 1.0)
        torch.testing.assert_close(full, expected, rtol=0, atol=1e-6)
        assert (first - mels_a).abs().mean() > 0.1  # the first pass's frames are not the targets
        assert (full - forced).abs().max() > 1e-3 and (full - run(mels_b, 1.0)).abs().max() > 1e-3
        half = run(mels_a, 0.5)
        torch.testing.assert_close(half, run(mels_a, 0.5), rtol=0, atol=0)  # reproducible for a seed
        assert (half - forced).abs().max() > 1e-3 and (half - full).abs().max() > 1e-3
    mels = mels_a.clone().requires_grad_(True)  # with gradients: none reach the frames the first pass replaced
    run(mels, 1.0).sum().backward()
    assert mels.grad is None or not mels.grad.any()


def test_scheduled_sampling_feeds_the_decoders_own_frames(tiny, ss_case):
    """own_frames = 0 is teacher forcing, 1 never reads the targets (free running, as at inference),
    in between mixes the two per utterance and step, reproducibly for a seed."""
    chars, spk, mels_a, mels_b = ss_case

    def run(mels, p, seed=0):
        with torch.no_grad():
            return tiny(chars, mels, spk, torch.Generator().manual_seed(seed), own_frames=p)[0]

    forced = run(mels_a, 0.0)
    with torch.no_grad():  # (with grad on, torch.lstm may pick another kernel: equal to ~1e-7)
        torch.testing.assert_close(forced, tiny(chars, mels_a, spk, torch.Generator().manual_seed(0))[0], rtol=0, atol=0)
    assert (forced - run(mels_b, 0.0)).abs().max() > 1e-3  # teacher forcing reads the targets
    free = run(mels_a, 1.0)
    torch.testing.assert_close(free, run(mels_b, 1.0), rtol=0, atol=0)  # free running never does
    mixed = run(mels_a, 0.5)
    torch.testing.assert_close(mixed, run(mels_a, 0.5), rtol=0, atol=0)
    # step 0 reads the go frame (forced ran the split decoder, mixed the step loop: equal to float rounding)
    torch.testing.assert_close(mixed[:, :, :3], forced[:, :, :3], rtol=0, atol=1e-6)
    assert (mixed - forced).abs().max() > 1e-3 and (mixed - free).abs().max() > 1e-3
    with pytest.raises(ValueError, match="own_frames"):
        run(mels_a, 1.5)


def test_free_run_output_is_the_decoder_fed_its_own_frames(tiny, ss_case):
    """free_run = F: a fifth output, the postnet mel of the first F frames decoded free-running (the same
    draws as a teacher-forced pass followed by an own-frames pass of F frames, by hand): it never reads the
    targets' values, the other outputs are the plain pass's, and gradients reach the decoder through it."""
    chars, spk, mels_a, mels_b = ss_case
    with torch.no_grad():
        plain = tiny(chars, mels_a, spk, torch.Generator().manual_seed(0))
        out = tiny(chars, mels_a, spk, torch.Generator().manual_seed(0), free_run=12)
        assert len(plain) == 4 and len(out) == 5 and out[4].shape == (2, 80, 12)
        for a, b in zip(plain, out[:4]):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        g = torch.Generator().manual_seed(0)
        memory, keys = tiny.encode(chars, spk, g)
        tiny._forced(memory, keys, chars != 0, mels_a, g)
        free = tiny._forced(memory, keys, chars != 0, mels_a[:, :, :12], g, 1.0)[0]
        torch.testing.assert_close(out[4], tiny.postnet_mel(free), rtol=0, atol=1e-6)
        other = tiny(chars, mels_b, spk, torch.Generator().manual_seed(0), free_run=12)
        assert (other[0] - out[0]).abs().max() > 1e-3  # the teacher-forced pass reads the targets
        torch.testing.assert_close(other[4], out[4], rtol=0, atol=1e-6)  # the free-running one never does
    tiny.zero_grad()
    tiny(chars, mels_a, spk, torch.Generator().manual_seed(0), free_run=12)[4].sum().backward()
    assert tiny.decoder.mel_proj.weight.grad.abs().sum() > 0
    tiny.zero_grad()
    with pytest.raises(ValueError, match="free_run"):
        tiny(chars, mels_a, spk, free_run=31)


def test_same_seed_same_mel_other_seed_differs(tiny):
    a = synthesize(tiny, [TEXT], _emb(), FREE)[0][0]
    b = synthesize(tiny, [TEXT], _emb(), FREE)[0][0]
    c = synthesize(tiny, [TEXT], _emb(), dataclasses.replace(FREE, seed=1))[0][0]
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-3 * np.abs(a).max()  # prenet dropout is on at inference: the seed matters


def test_batch_results_shapes(tiny):
    out = synthesize(tiny, [TEXT, "Hello."], _emb(2), FREE)
    assert [o[0].shape for o in out] == [(80, 80), (80, 80)]
    assert out[0][1].shape == (40, len(TEXT) + 1) and out[1][1].shape == (40, len("hello.") + 1)
    np.testing.assert_allclose(out[1][1].sum(1), 1.0, atol=1e-5)  # padding excluded from attention
    assert [o[2] for o in out] == [39, 39]


def test_stream_equals_offline(tiny):
    opts = dataclasses.replace(FREE, max_decoder_steps=60, first_chunk=8, postnet_chunk=8, postnet_context=16)
    offline = synthesize(tiny, [TEXT], _emb(), opts)[0][0]
    info = StreamInfo()
    chunks = list(stream(tiny, TEXT, _emb()[0], opts, info))
    streamed = np.concatenate(chunks, axis=1)
    assert streamed.shape == offline.shape == (80, 120)
    # stated tolerance: with 16 frames of context the chunked bi-GRU postnet is within 1e-3
    err = np.abs(streamed - offline).max()
    assert err < 1e-3
    assert [c.shape[1] for c in chunks] == [8] * 15
    assert (info.lookahead_frames, info.frames_emitted, info.decoder_steps, info.stop_reason) == (16, 120, 60, "max_length")
    # the context matters: without it the chunk edges differ visibly (the test can fail)
    no_ctx = np.concatenate(list(stream(tiny, TEXT, _emb()[0], dataclasses.replace(opts, postnet_context=0))), axis=1)
    assert np.abs(no_ctx - offline).max() > 20 * max(err, 1e-6)


def test_stream_first_chunk_before_decoding_ends(tiny):
    opts = dataclasses.replace(FREE, max_decoder_steps=60, first_chunk=4, postnet_chunk=10, postnet_context=6)
    info = StreamInfo()
    it = stream(tiny, TEXT, _emb()[0], opts, info)
    first = next(it)
    assert first.shape == (80, 4)
    assert info.frames_decoded == 10  # chunk (4) + look-ahead (6): made as soon as possible
    assert next(it).shape == (80, 10) and info.frames_decoded == 20  # later chunks are postnet_chunk long
    it.close()


def test_stream_default_chunking_equals_offline(tiny):
    opts = dataclasses.replace(FREE, max_decoder_steps=25)  # defaults: first 4, then 24, context 12
    chunks = list(stream(tiny, TEXT, _emb()[0], opts))
    assert [c.shape[1] for c in chunks] == [4, 24, 22]
    offline = synthesize(tiny, [TEXT], _emb(), opts)[0][0]
    np.testing.assert_allclose(np.concatenate(chunks, axis=1), offline, atol=1e-3)


def test_int8_decoder_is_close_and_streams(tiny):
    q = quantize_decoder_int8(tiny)
    assert type(q.decoder.res_rnn1).__module__.startswith("torch.ao.nn.quantized")
    assert isinstance(tiny.decoder.res_rnn1, torch.nn.LSTMCell)  # the original is untouched
    opts = dataclasses.replace(FREE, max_decoder_steps=30)
    ref = synthesize(tiny, [TEXT], _emb(), opts)[0][0]
    out = synthesize(q, [TEXT], _emb(), opts)[0][0]
    # int8 weights: within 2 % of the output range of the float model (measured ~0.1 %)
    assert np.abs(out - ref).max() < 0.02 * np.abs(ref).max()
    assert np.abs(out - ref).max() > 0  # it is really a different computation
    streamed = np.concatenate(list(stream(q, TEXT, _emb(), opts)), axis=1)
    np.testing.assert_allclose(streamed, out, atol=1e-3)


def test_stop_token_ends_decoding(tiny):
    model = Tacotron(SynthesizerDims.tiny()).eval()
    model.load_state_dict(tiny.state_dict())
    with torch.no_grad():
        model.decoder.stop_proj.weight.zero_()
        model.decoder.stop_proj.bias.fill_(10.0)  # always "stop"
    opts = TacotronOptions(detect_attention_failure=False, min_frames=10)
    mel, attn, stop_step = synthesize(model, [TEXT], _emb(), opts)[0]
    assert stop_step == 5 and mel.shape == (80, 12)  # first step with more than min_frames frames
    info = StreamInfo()
    streamed = np.concatenate(list(stream(model, TEXT, _emb(), opts, info)), axis=1)
    assert streamed.shape == (80, 12) and info.stop_reason == "stop_token"


def test_max_length_guard_raises(tiny):
    opts = TacotronOptions(stop_threshold=None, detect_attention_failure=False, max_decoder_steps=7)
    with pytest.raises(MaxLengthError):
        synthesize(tiny, [TEXT], _emb(), opts)
    with pytest.raises(MaxLengthError):
        list(stream(tiny, TEXT, _emb(), opts))


def test_attention_stuck_is_detected():
    torch.manual_seed(0)
    model = Tacotron(SynthesizerDims.tiny()).eval()
    with torch.no_grad():
        model.decoder.attn_net.v.weight.zero_()  # uniform attention: the peak never moves
    opts = TacotronOptions(stop_threshold=None, max_stuck_frames=30, max_decoder_steps=100)
    with pytest.raises(AttentionFailureError, match="stuck"):
        synthesize(model, [TEXT], _emb(), opts)
    with pytest.raises(AttentionFailureError, match="stuck"):
        list(stream(model, TEXT, _emb(), opts))


def test_attention_skip_is_detected(monkeypatch):
    torch.manual_seed(0)
    model = Tacotron(SynthesizerDims.tiny()).eval()

    def jump_to_end(keys, query, cumulative, mask):  # all weight on the last symbol
        w = torch.zeros(keys.shape[:2])
        w[:, -1] = 1.0
        return w

    monkeypatch.setattr(model.decoder.attn_net, "forward", jump_to_end)
    with pytest.raises(AttentionFailureError, match="skipped"):
        synthesize(model, [TEXT], _emb(), TacotronOptions(stop_threshold=None, max_skip_chars=8))
    # a generous limit lets the same run go on (the check is the option, not chance)
    out = synthesize(model, [TEXT], _emb(), dataclasses.replace(FREE, max_skip_chars=100, detect_attention_failure=True,
                                                                   max_stuck_frames=1000))
    assert out[0][0].shape == (80, 80)


def test_attention_window_keeps_attention_near_the_last_peak():
    from rtclone.synth_stream import Decoding
    from rtclone.synthesizer import encode_texts

    torch.manual_seed(0)
    model = Tacotron(SynthesizerDims.tiny()).eval()
    with torch.no_grad():  # a random model whose attention wants to jump to the end
        model.decoder.attn_net.v.weight.normal_(0, 5.0)
    chars = encode_texts([TEXT], model.dims.num_chars)
    back, ahead = 1, 2
    run = Decoding(model, chars, torch.from_numpy(_emb()), dataclasses.replace(FREE, attention_window=(back, ahead)))
    peak, jumps = 0, []
    with torch.no_grad():
        for _, scores in run:
            w = scores[0]
            outside = torch.ones_like(w, dtype=torch.bool)
            outside[max(0, peak - back) : peak + ahead + 1] = False
            assert float(w[outside].sum()) == 0.0  # no weight outside the window
            new = int(w.argmax())
            jumps.append(new - peak)
            peak = new
    assert max(jumps) <= ahead and min(jumps) >= -back and peak > 0
    # without the window the same model jumps further in one step
    free = Decoding(model, chars, torch.from_numpy(_emb()), FREE)
    with torch.no_grad():
        peaks = [int(s[0].argmax()) for _, s in free]
    assert max(np.diff([0] + peaks)) > ahead


def test_end_of_text_stops_a_decoder_whose_stop_token_never_fires(monkeypatch):
    torch.manual_seed(0)
    model = Tacotron(SynthesizerDims.tiny()).eval()

    def walk(keys, query, cumulative, mask):  # the peak moves one symbol per step, then rests on the last
        n_steps = int(round(float(cumulative.sum(dim=1)[0])))
        w = torch.zeros(keys.shape[:2])
        w[:, min(n_steps, keys.shape[1] - 1)] = 1.0
        return w

    monkeypatch.setattr(model.decoder.attn_net, "forward", walk)
    opts = TacotronOptions(stop_threshold=None, max_stuck_frames=100, max_decoder_steps=400)
    n_text = len(encode_texts([TEXT], model.dims.num_chars)[0])
    with pytest.raises(AttentionFailureError, match="stuck"):  # without the option: the stuck guard
        synthesize(model, [TEXT], _emb(), opts)
    ((mel, _, _),) = synthesize(model, [TEXT], _emb(), dataclasses.replace(opts, end_of_text_frames=8))
    r = model.r
    # the peak reaches the last symbol at step n_text - 1 and rests there for 8 frames
    assert mel.shape[1] == (n_text - 1 + math.ceil(8 / r)) * r
    chunks = list(stream(model, TEXT, _emb(), dataclasses.replace(opts, end_of_text_frames=8)))
    assert sum(c.shape[1] for c in chunks) == mel.shape[1]


@pytest.mark.parametrize("w", [(1,), (-1, 3), (1, 0), "ab", (1.5, 2)])
def test_attention_window_is_validated(w):
    with pytest.raises(OptionsError):
        TacotronOptions(attention_window=w)
    assert TacotronOptions(attention_window=[1, 4]).attention_window == (1, 4)


@pytest.mark.parametrize("text", ["", "   ", "...", "###", "\u2603"])
def test_bad_text(tiny, text):
    with pytest.raises(TextError):
        synthesize(tiny, [text], _emb(), FREE)
    with pytest.raises(TextError):
        stream(tiny, text, _emb(), FREE)


def test_no_texts(tiny):
    with pytest.raises(TextError):
        synthesize(tiny, [], _emb(), FREE)


@pytest.mark.parametrize("emb", [np.zeros(128, np.float32), np.zeros((1, 255), np.float32), np.zeros((2, 256), np.float32),
                                 np.full(256, np.nan, np.float32), np.r_[np.zeros(255), np.inf].astype(np.float32)])
def test_bad_embedding(tiny, emb):
    with pytest.raises(InputShapeError):
        synthesize(tiny, ["Hello."], emb, FREE)
    with pytest.raises(InputShapeError):
        stream(tiny, "Hello.", emb, FREE)


@pytest.mark.parametrize("kw", [dict(max_decoder_steps=0), dict(max_decoder_steps=-5), dict(max_decoder_steps=10**9),
                                dict(max_frames_per_char=0.0), dict(max_frames_per_char=1e9), dict(stop_threshold=1.5),
                                dict(on_max_length="ignore"), dict(seed=-1), dict(postnet_chunk=0), dict(max_stuck_frames=0),
                                dict(max_decoder_steps=2.5)])
def test_bad_options(kw):
    with pytest.raises(OptionsError):
        TacotronOptions(**kw)


def test_reduction_factor_bounds(tiny):
    with pytest.raises(OptionsError):
        tiny.set_r(0)
    with pytest.raises(OptionsError):
        tiny.set_r(tiny.dims.max_r + 1)
    assert tiny.r == 2
