"""Speaker-consistency loss: the synthesizer-mel → encoder-mel conversion and the loss (its training option:
tests/test_train_synthesizer.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import make_speech
from rtclone import audio as A
from rtclone.errors import InputShapeError
from rtclone.train.speaker_loss import EncoderMelFromSynth, crop_starts, frozen_encoder, speaker_consistency_loss

pytestmark = pytest.mark.usefixtures("one_thread")

FOX = "The quick brown fox jumps over the lazy dog near the river bank."
SHELLS = "She sells sea shells by the sea shore every summer."


@pytest.fixture(scope="module")
def judge():
    return frozen_encoder()


@pytest.fixture(scope="module")
def speech():
    return {(v, t): A.preprocess_wav(make_speech(t, voice=v), A.SAMPLE_RATE) for v in ("slt", "awb") for t in (FOX, SHELLS)}


def _embed(encoder, enc_mel: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return encoder(torch.as_tensor(enc_mel[None, :160], dtype=torch.float32))[0].numpy()


def test_converted_mel_has_the_encoder_mels_levels_and_voice(speech, judge):
    conv = EncoderMelFromSynth()
    wav = speech["slt", FOX]
    got = conv(torch.tensor(A.synth_mel(wav))[None])[0].numpy()  # (U, 40)
    want = A.encoder_mel(wav)
    assert got.shape == want.shape  # 1 + N // 200 synthesizer frames -> 1 + N // 160 encoder frames
    level = 10 * np.log10(got.mean(0) / want.mean(0))  # long-term level per band, dB
    assert np.all(np.abs(level[1:]) < 3.0)  # band 0 lies under the synthesizer mel's 55 Hz floor
    assert level[0] < -3.0
    # the encoder hears the same voice in it: nearer this recording, and slt's other sentence, than awb's
    e_conv, e_true = _embed(judge, got), _embed(judge, want)
    other_slt, awb = _embed(judge, A.encoder_mel(speech["slt", SHELLS])), _embed(judge, A.encoder_mel(speech["awb", SHELLS]))
    assert e_conv @ e_true > 0.8
    assert e_conv @ other_slt > e_conv @ awb + 0.15
    with pytest.raises(InputShapeError, match="80"):
        conv(torch.zeros(1, 40, 10))


def test_loss_is_zero_on_the_target_grows_with_another_voice_and_trains_only_the_prediction(speech, judge):
    conv = EncoderMelFromSynth()
    mels = [A.synth_mel(speech[v, SHELLS]) for v in ("slt", "awb")]
    T = min(m.shape[1] for m in mels)
    slt, awb = (torch.tensor(m[:, :T])[None] for m in mels)
    lens = torch.tensor([T])
    same = speaker_consistency_loss(judge, conv, slt.clone(), slt, lens, generator=torch.Generator().manual_seed(0))
    assert float(same) == pytest.approx(0.0, abs=1e-5)
    pred = awb.clone().requires_grad_(True)
    other = speaker_consistency_loss(judge, conv, pred, slt, lens, generator=torch.Generator().manual_seed(0))
    # the same window of both: 1 - cos of the two voices' embeddings there
    start = int(crop_starts(lens, 128, torch.Generator().manual_seed(0))[0])
    with torch.no_grad():
        e = [judge(conv(m[:, :, start:start + 128])) for m in (awb, slt)]
    assert float(other.detach()) == pytest.approx(1.0 - float((e[0] * e[1]).sum()), abs=1e-5)
    assert float(other.detach()) > 0.2
    other.backward()
    assert pred.grad is not None and float(pred.grad.abs().sum()) > 0
    assert all(p.grad is None and not p.requires_grad for p in judge.parameters())
    with pytest.raises(InputShapeError, match="differ"):
        speaker_consistency_loss(judge, conv, slt[:, :, :-1], slt, lens)


def test_crop_starts_stay_inside_each_item():
    lens = torch.tensor([300, 128, 50, 129])
    for seed in range(20):
        s = crop_starts(lens, 128, torch.Generator().manual_seed(seed))
        assert s.tolist()[1:3] == [0, 0] and 0 <= int(s[0]) <= 172 and int(s[3]) in (0, 1)
    draws = {int(crop_starts(lens, 128, torch.Generator().manual_seed(k))[0]) for k in range(50)}
    assert len(draws) > 20  # spread over the item, not one window
    assert torch.equal(crop_starts(lens, 128, torch.Generator().manual_seed(3)),
                       crop_starts(lens, 128, torch.Generator().manual_seed(3)))
