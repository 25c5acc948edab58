"""The default models shipped in rtclone/models: they load, clone speech in a test-sized budget, and
reject bad references clearly. These run the real (small) trained models, not random ones."""

import json

import numpy as np
import pytest

from rtclone.asr import Transcriber, normalize_words
from rtclone.errors import AudioDecodeError, AudioTooShortError, SilentAudioError
from rtclone.pipeline import DEFAULT_MODELS_DIR, Cloner, SynthesisOptions

from conftest import make_speech

pytestmark = pytest.mark.usefixtures("one_thread")

TEXT = "The weather is nice today."


@pytest.fixture(scope="module")
def cloner():
    return Cloner.from_default()


@pytest.fixture(scope="module")
def reference():
    return make_speech("Please call Stella and ask her to bring these things with her from the store.", "slt")


def test_shipped_models_are_small_and_described():
    files = [p for p in DEFAULT_MODELS_DIR.rglob("*") if p.is_file()]
    assert (DEFAULT_MODELS_DIR / "synthesizer.pt").is_file()
    assert sum(p.stat().st_size for p in files) <= 60e6
    card = json.loads((DEFAULT_MODELS_DIR / "card.json").read_text())
    assert card["synthesizer"]["meta"]["step"] > 0
    assert card["synthesizer"]["bytes"] == (DEFAULT_MODELS_DIR / "synthesizer.pt").stat().st_size
    if (DEFAULT_MODELS_DIR / "vocoder.pt").is_file():
        assert card["vocoder"]["block_sparsity_16x1"] >= 0.0


def test_default_models_clone_speech(cloner, reference):
    r = cloner.clone(TEXT, reference, SynthesisOptions(seed=0), sr=16000)
    audio = r.audio
    assert audio.dtype == np.float32 and np.all(np.abs(audio) <= 1.0)
    seconds = len(audio) / 16000
    assert 0.6 <= seconds <= 4.0, seconds  # five words: neither a truncated nor a runaway decode
    rms = float(np.sqrt(np.mean(audio**2)))
    assert rms > 0.01  # not silent
    # speech-like: energy comes and goes (syllables), unlike a tone or steady noise
    frames = audio[: len(audio) // 400 * 400].reshape(-1, 400)
    env = np.sqrt((frames**2).mean(axis=1))
    assert np.std(env) / np.mean(env) > 0.3
    # partly transcribable: pocketsphinx recognises at least one of the words
    words = set(normalize_words(Transcriber().transcribe(audio)))
    assert words & set(normalize_words(TEXT)), words


def test_the_clone_is_streamed_in_several_chunks(cloner, reference):
    emb = cloner.embed(reference, 16000)
    chunks = list(cloner.stream("The weather is nice today, and we will go for a long walk in the park.", emb))
    assert len(chunks) >= 4 and sum(len(c) for c in chunks) / 16000 > 1.5
    # audio starts with the vocoder's first Griffin-Lim segment (0.3 s), long before the sentence (one
    # text chunk, > 3 s) is fully spoken
    assert len(chunks[0]) == cloner.vocoder.segments.first * 200 < 0.5 * 16000


@pytest.mark.parametrize("make, error", [
    (lambda: make_speech("hi", "slt")[:2400], AudioTooShortError),     # 0.15 s
    (lambda: np.zeros(5 * 16000, np.float32), SilentAudioError),
    (lambda: b"RIFF\x00\x00\x00\x00WAVEthis is not audio", AudioDecodeError),
])  # fmt: skip
def test_bad_references_get_clear_errors(cloner, make, error):
    ref = make()
    with pytest.raises(error) as info:
        cloner.clone(TEXT, ref, sr=None if isinstance(ref, bytes) else 16000)
    assert len(str(info.value)) > 10
