"""Shared, seeded fixtures. Speech is made at test time with Debian's flite / espeak-ng."""

from __future__ import annotations

import functools
import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

SR = 16000
_CACHE = Path(tempfile.gettempdir()) / "rtclone-test-speech"


def _have(tool: str) -> bool:
    return shutil.which(tool) is not None


@functools.lru_cache(maxsize=None)
def _synth_file(engine: str, voice: str, text: str, rate: int) -> Path:
    _CACHE.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha1(repr((engine, voice, text, rate)).encode()).hexdigest()[:16]
    out = _CACHE / f"{engine}-{voice}-{key}.wav"
    if not out.exists():
        tmp = out.with_suffix(".tmp.wav")
        if engine == "flite":
            cmd = ["flite", "-voice", voice, "-t", text, "-o", str(tmp)]
        elif engine == "espeak-ng":
            cmd = ["espeak-ng", "-v", voice, "-s", str(rate), "-w", str(tmp), text]
        else:
            raise ValueError(engine)
        subprocess.run(cmd, check=True, capture_output=True)
        tmp.replace(out)
    return out


def make_speech(text: str, voice: str = "slt", engine: str = "flite", sr: int = SR, rate: int = 160) -> np.ndarray:
    """Speech as float32 mono at ``sr`` made by flite (voices kal, kal16, awb, rms, slt) or espeak-ng."""
    import librosa
    import soundfile as sf

    if not _have(engine):
        pytest.skip(f"{engine} is not installed")
    wav, file_sr = sf.read(str(_synth_file(engine, voice, text, rate)), dtype="float32")
    if wav.ndim == 2:
        wav = wav.mean(axis=1)
    if file_sr != sr:
        wav = librosa.resample(wav, orig_sr=file_sr, target_sr=sr)
    return wav.astype(np.float32)


def speech_file(text: str, voice: str = "slt", engine: str = "flite") -> Path:
    """Path of a wav file (at the engine's own rate) with the given speech."""
    if not _have(engine):
        pytest.skip(f"{engine} is not installed")
    return _synth_file(engine, voice, text, 160)


@pytest.fixture
def speech():
    """The ``make_speech`` factory."""
    return make_speech


@pytest.fixture(scope="module")
def one_thread():
    """One torch intra-op thread for a whole test module (restored after it): the CI budget is per
    core, and oversubscribed OpenMP threads crawl. Test modules use it via
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    np.random.seed(0)
    yield


# Synthesizer options that let a random tiny Tacotron finish deterministically (no stop token,
# no attention-failure check, a short length guard).
TINY_TACOTRON_OVERRIDES = {"detect_attention_failure": False, "on_max_length": "truncate", "max_frames_per_char": 2.0, "stop_threshold": None}


def tiny_cloner(seed: int = 0):
    """A Cloner with the pretrained encoder and tiny seeded random synthesizer + vocoder."""
    from rtclone.checkpoints import load_encoder
    from rtclone.pipeline import Cloner
    from rtclone.synthesizer import SynthesizerDims, Tacotron
    from rtclone.vocoder import VocoderDims, WaveRNN

    torch.manual_seed(seed)
    syn = Tacotron(SynthesizerDims.tiny()).eval()
    voc = WaveRNN(VocoderDims(rnn_dims=32, fc_dims=32, compute_dims=16, res_out_dims=32, res_blocks=1)).eval()
    return Cloner(load_encoder(), syn, voc, tacotron_overrides=TINY_TACOTRON_OVERRIDES)


def check_card_flag(folder: Path, section: str, key: str) -> None:
    """A model folder's card.json flag ``section.key`` reaches ``Cloner.<key>`` through from_dir: off without a
    card, on with ``true``, and a non-bool value is a CheckpointError naming the key. Leaves the card at ``true``."""
    import json

    from rtclone.errors import CheckpointError
    from rtclone.pipeline import Cloner

    (folder / "card.json").unlink(missing_ok=True)
    assert getattr(Cloner.from_dir(folder), key) is False  # no card
    (folder / "card.json").write_text(json.dumps({section: {key: "yes"}}))
    with pytest.raises(CheckpointError, match=key):
        Cloner.from_dir(folder)
    (folder / "card.json").write_text(json.dumps({section: {key: True}}))
    assert getattr(Cloner.from_dir(folder), key) is True
