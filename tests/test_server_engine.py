"""The real Cloner (tiny seeded random synthesizer/vocoder, pretrained encoder) behind the server:
enrol from speech, stream a sentence, and get exactly the audio the library makes for that seed."""

import numpy as np
import pytest
from conftest import tiny_cloner
from fakes import run
from rtclone.client import Client, wav_bytes
from rtclone.pipeline import SynthesisOptions
from rtclone.serve.server import make_engine, running_server
from rtclone.errors import CheckpointError, OptionsError, ProtocolError


@pytest.fixture(scope="module")
def cloner():
    return tiny_cloner(1)


def test_server_streams_the_cloners_audio(cloner, tmp_path, speech):
    ref = speech("Please call Stella and ask her to bring these things with her from the store.", voice="awb")
    text = "Streaming through the server. Second part."

    async def main():
        async with running_server(cloner, voices_dir=tmp_path) as srv:
            async with await Client.connect(f"ws://127.0.0.1:{srv.port}") as client:
                voice_id = (await client.enrol(wav_bytes(ref), "awb"))["voice_id"]
                with pytest.raises(ProtocolError, match="voice_id"):  # an invalid request gets its error, no hang
                    await client.say(text, voice_id=123)  # type: ignore[arg-type]
                said = await client.say(text, voice_id=voice_id, options={"seed": 5, "backend": "torch"})
                _, stored = srv.registry.get(voice_id)
                return said, stored

    said, stored = run(main(), timeout=120)
    emb = cloner.embed(ref, 16000)
    assert float(stored @ emb) > 0.9999
    expected = cloner.clone(text, stored, SynthesisOptions(seed=5, backend="torch")).audio
    assert said.sample_rate == 16000 and said.audio.shape == expected.shape
    assert np.max(np.abs(said.audio - expected)) <= 1.5 / 32767  # PCM16 quantisation on the wire
    assert 0 < said.ttfa_s and said.rtf > 0


def test_make_engine_names_missing_models(tmp_path):
    with pytest.raises(CheckpointError, match="synthesizer.pt"):
        make_engine(str(tmp_path))


def test_make_engine_and_serve_set_the_int8_decoder(tmp_path, monkeypatch):
    """make_engine's decoder_int8 overrides the card's (None keeps it); `rtclone serve --int8-decoder` hands it on."""
    import json

    from rtclone.checkpoints import save_model
    from rtclone.cli import main
    from rtclone.serve import server

    save_model(tiny_cloner(0).synthesizer, tmp_path / "synthesizer.pt", "synthesizer")
    assert make_engine(str(tmp_path)).decoder_int8 is False
    assert make_engine(str(tmp_path), decoder_int8=True).decoder_int8 is True
    (tmp_path / "card.json").write_text(json.dumps({"synthesizer": {"decoder_int8": True}}))
    assert make_engine(str(tmp_path)).decoder_int8 is True
    assert make_engine(str(tmp_path), decoder_int8=False).decoder_int8 is False
    seen = []
    monkeypatch.setattr(server, "serve_main", lambda **kw: seen.append(kw["decoder_int8"]) or 0)
    for extra in (["--int8-decoder", "on"], ["--int8-decoder", "off"], []):
        assert main(["serve", "--models", str(tmp_path), *extra]) == 0
    assert seen == [True, False, None]


def test_serve_sets_one_torch_thread_unless_told(monkeypatch):
    """`rtclone serve` gives torch 1 intra-op thread by default (its streams are its parallelism) or --threads N;
    bad counts are refused before anything loads."""
    import torch

    from rtclone.cli import main
    from rtclone.serve import server

    seen = []
    monkeypatch.setattr(server, "run_server", lambda **kw: seen.append(torch.get_num_threads()))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert main(["serve"]) == 0
        assert main(["serve", "--threads", "2"]) == 0
        assert seen == [1, 2]
        for bad in (0, -1, True, 2.0):
            with pytest.raises(OptionsError, match="threads"):
                server.set_torch_threads(bad)
        assert main(["serve", "--threads", "0"]) == OptionsError.exit_status
        assert seen == [1, 2]
    finally:
        torch.set_num_threads(before)


def test_warm_up_runs_one_embedding_and_stream_and_never_raises(tmp_path, monkeypatch, caplog):
    """The served engine is warmed before the first request (make_engine(warm=True), which `rtclone serve` and its
    workers use); a warm-up failure is logged, not raised."""
    from fakes import FakeEngine

    from rtclone.checkpoints import save_model
    from rtclone.serve import server

    fake = FakeEngine()
    server.warm_up(fake)
    assert fake.texts == ["Warm up."] and fake.started == fake.closed == 1
    failing = FakeEngine(fail_after_chunks=0)
    with caplog.at_level("WARNING", logger="rtclone.serve"):
        server.warm_up(failing)
    assert "warm-up failed" in caplog.text
    save_model(tiny_cloner(0).synthesizer, tmp_path / "synthesizer.pt", "synthesizer")
    warmed = []
    monkeypatch.setattr(server, "warm_up", lambda engine: warmed.append(engine))
    cold = make_engine(str(tmp_path))
    assert warmed == []
    hot = make_engine(str(tmp_path), warm=True)
    assert warmed == [hot] and hot is not cold
