"""Streaming Griffin-Lim (rtclone.griffin_lim): segments joined without seams, early first audio."""

from __future__ import annotations

import numpy as np
import pytest

from rtclone import audio
from rtclone.errors import InputShapeError, OptionsError
from rtclone.griffin_lim import SegmentPlan
from rtclone.audio import griffin_lim_iterate as iterate
from rtclone.vocoder_gen import GriffinLimVocoder

HOP = audio.SYN_HOP


@pytest.fixture(scope="module")
def mel():
    from conftest import make_speech

    return audio.synth_mel(make_speech("Streaming phase recovery, one piece after another.", "slt"))


def chunks_of(mel: np.ndarray, n: int) -> list[np.ndarray]:
    return [mel[:, i : i + n] for i in range(0, mel.shape[1], n)]


def streamed(gl: GriffinLimVocoder, pieces, **options) -> list[np.ndarray]:
    return list(gl.stream(pieces, **options))


def mel_error(y: np.ndarray, mel: np.ndarray) -> float:
    rebuilt = audio.synth_mel(y)
    n = rebuilt.shape[1] - 2
    return float(np.mean(np.abs(rebuilt[:, :n] - mel[:, :n])))


def test_segments_match_the_mel_as_well_as_whole_utterance_griffin_lim(mel):
    gl = GriffinLimVocoder(n_iter=16)
    parts = streamed(gl, chunks_of(mel, 4), fade_out=0.0)
    y = np.concatenate(parts)
    assert y.dtype == np.float32 and y.shape == ((mel.shape[1] - 1) * HOP,)
    plan = gl.segments
    sizes = [plan.size(k) * HOP for k in range(len(parts) - 1)]
    assert [len(p) for p in parts[:-1]] == sizes and len(parts) >= 3  # one piece per segment, as they complete
    whole = GriffinLimVocoder(n_iter=16, segments=None).generate(mel, fade_out=0.0)
    noise = np.random.default_rng(0).normal(0, 0.05, len(y)).astype(np.float32)
    assert mel_error(y, mel) < 1.1 * mel_error(whole, mel) < 0.5 * mel_error(noise, mel)
    # no seam: the step between segments is no larger than the signal's ordinary sample-to-sample steps
    steps = np.abs(np.diff(y))
    for b in np.cumsum([len(p) for p in parts[:-1]]):
        assert abs(y[b] - y[b - 1]) <= np.percentile(steps, 99)


def test_output_depends_on_the_frames_not_on_how_they_arrive(mel):
    gl = GriffinLimVocoder(n_iter=8)
    ref = np.concatenate(streamed(gl, [mel], seed=3))
    for n in (1, 7, 50):
        assert np.array_equal(np.concatenate(streamed(gl, chunks_of(mel, n), seed=3)), ref)
    assert not np.array_equal(np.concatenate(streamed(gl, [mel], seed=4)), ref)  # the seed sets the initial phase


def test_first_audio_comes_after_the_first_segment_and_its_right_context(mel):
    plan = SegmentPlan(first=16, longest=64, left=4, right=3)
    gl = GriffinLimVocoder(n_iter=4, segments=plan)
    pulled = []

    def frames():
        for i in range(mel.shape[1]):
            pulled.append(i)
            yield mel[:, i : i + 1]

    it = gl.stream(frames(), fade_out=0.0)
    first = next(it)
    assert len(pulled) == plan.first + plan.right and len(first) == plan.first * HOP
    # with a fade-out, the held-back samples delay the first piece until more than them is made
    pulled.clear()
    it = gl.stream(frames(), fade_out=0.25)
    first = next(it)
    made = plan.first + plan.size(1)  # 16 frames (3 200 samples) do not pass the 4 000 held back; 48 do
    assert len(pulled) == made + plan.right and len(first) == made * HOP - 4000


def test_fade_out_holds_back_and_ramps_the_last_samples(mel):
    gl = GriffinLimVocoder(n_iter=8)
    plain = np.concatenate(streamed(gl, chunks_of(mel, 10), fade_out=0.0))
    faded = np.concatenate(streamed(gl, chunks_of(mel, 10)))  # default 0.25 s
    np.testing.assert_array_equal(faded[:-4000], plain[:-4000])
    np.testing.assert_allclose(faded[-4000:], plain[-4000:] * np.linspace(1.0, 0.0, 4000), atol=1e-7)
    assert faded[-1] == 0.0


def test_the_limiter_only_lowers_loud_output(mel):
    quiet, loud = GriffinLimVocoder(n_iter=8), GriffinLimVocoder(n_iter=8)
    unlimited = GriffinLimVocoder(n_iter=8)
    unlimited.peak = 100.0
    y = np.concatenate(streamed(quiet, [mel], fade_out=0.0))
    assert np.abs(y).max() < quiet.peak
    np.testing.assert_array_equal(y, np.concatenate(streamed(unlimited, [mel], fade_out=0.0)))
    raw = np.concatenate(streamed(unlimited, [mel + 1.0], fade_out=0.0))  # louder frames overshoot full scale
    lim = np.concatenate(streamed(loud, [mel + 1.0], fade_out=0.0))
    assert np.abs(raw).max() > 1.0 and np.abs(lim).max() <= loud.peak + 1e-6
    gain = np.abs(lim) / np.maximum(np.abs(raw), 1e-9)
    big = np.abs(raw) > 1e-3
    assert np.all(gain[big] <= 1.0 + 1e-5) and np.all(np.diff(gain[big]) <= 1e-5)  # never raised back


def test_iterate_keeps_the_known_samples_and_continues_them(mel):
    mag = (audio.synth_mel_to_linear(mel[:, :40]).T).astype(np.float32)
    phase = np.exp(2j * np.pi * np.random.default_rng(0).random(mag.shape)).astype(np.complex64)
    length = 39 * HOP
    full, _ = iterate(mag, phase, 16, length)
    known = full[:800].copy()
    x, ph = iterate(mag, phase, 16, length, known)
    assert np.array_equal(x[:800], known) and ph.shape == mag.shape
    assert np.allclose(np.abs(ph), 1.0, atol=1e-4)
    assert abs(x[800] - x[799]) <= np.percentile(np.abs(np.diff(x)), 99)


def test_short_and_empty_streams(mel):
    gl = GriffinLimVocoder(n_iter=4)
    assert streamed(gl, [mel[:, :1]], fade_out=0.0) == []  # one frame: no samples (as the WaveRNN stream)
    y = np.concatenate(streamed(gl, [mel[:, :5]], fade_out=0.0))
    assert y.shape == (4 * HOP,) and np.all(np.isfinite(y))
    with pytest.raises(InputShapeError):
        streamed(gl, [])
    with pytest.raises(InputShapeError):
        streamed(gl, [mel[:, :0]])
    with pytest.raises(InputShapeError):
        streamed(gl, [mel[:40]])


@pytest.mark.parametrize("bad", [dict(first=0), dict(left=2), dict(right=1), dict(first=64, longest=32), dict(first=2.5), dict(right=True)])
def test_bad_segment_plans(bad):
    with pytest.raises(OptionsError):
        SegmentPlan(**bad)
    with pytest.raises(OptionsError):
        GriffinLimVocoder(segments="whole")


def test_formant_lifter_scales_the_envelope_detail_and_keeps_level_and_tilt():
    n = audio.SYN_N_MELS
    lift = audio.formant_lifter(0.3)
    assert np.allclose(audio.formant_lifter(0.0), np.eye(n))
    bands = np.arange(n)
    basis = lambda k: np.cos(np.pi * k * (2 * bands + 1) / (2 * n))  # noqa: E731  (DCT-II basis vectors)
    flat_and_tilt = -30.0 + 5.0 * basis(1)
    assert np.allclose(lift @ flat_and_tilt, flat_and_tilt)  # level and tilt untouched
    for k in (2, 7, 40, n - 1):
        assert np.allclose(lift @ basis(k), 1.3 * basis(k))  # every finer ripple 1.3 times as deep
    assert np.allclose(lift, lift.T) and not lift.flags.writeable


def test_formant_enhancement_keeps_each_frames_energy_and_deepens_its_envelope(mel):
    basis = audio._synth_basis()
    plain, sharp = audio.synth_mel_to_linear(mel), audio.synth_mel_to_linear(mel, 0.3)
    energy = lambda lin: np.sum((basis @ lin) ** 2, 0)  # noqa: E731  (mel power of each frame)
    # equal before the pseudo-inverse; after it (negative bins floored) within a few per cent
    assert np.allclose(energy(sharp), energy(plain), rtol=0.05)
    spread = lambda lin: np.std(20 * np.log10(basis @ lin), 0)  # noqa: E731  (dB spread of each frame's mel envelope)
    ratio = spread(sharp) / spread(plain)
    assert np.all(ratio > 1.0) and 1.2 < np.median(ratio) < 1.31  # about 1.3 where the -100 dB floor does not clip


def test_formant_enhanced_griffin_lim_streams_like_the_whole_and_checks_its_option(mel):
    gl = GriffinLimVocoder(n_iter=8, formants=0.3)
    ref = np.concatenate(streamed(gl, [mel], seed=3))
    assert np.array_equal(np.concatenate(streamed(gl, chunks_of(mel, 7), seed=3)), ref)  # frame by frame: no context needed
    assert not np.allclose(ref, np.concatenate(streamed(GriffinLimVocoder(n_iter=8, formants=0.0), [mel], seed=3)))
    assert GriffinLimVocoder().formants == audio.GRIFFIN_LIM_FORMANTS  # the engine's default
    whole = GriffinLimVocoder(n_iter=8, formants=0.3, segments=None).generate(mel, seed=3, fade_out=0.0)
    direct = audio.griffin_lim(mel, n_iter=8, seed=3, formants=0.3)[: len(whole)]
    assert np.allclose(whole, direct * min(1.0, GriffinLimVocoder.peak / np.abs(direct).max()), atol=1e-6)
    for bad in (-0.1, 1.5, True, "0.3"):
        with pytest.raises(OptionsError):
            GriffinLimVocoder(formants=bad)
