"""The command-line contract: names, --version, --json output and error exit codes."""

import json
import subprocess
import sys

import numpy as np
import pytest

from rtclone import __version__
from rtclone.cli import main
from rtclone.errors import OptionsError


def run(*args):
    return subprocess.run([sys.executable, "-m", "rtclone.cli", *args], capture_output=True, text=True, timeout=300)


def test_version():
    r = run("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"rtclone {__version__}"


def test_help_lists_the_contract_commands():
    r = run("--help")
    assert r.returncode == 0
    for name in ("embed", "verify", "info", "bench", "corpus", "train", "eval", "prune"):
        assert name in r.stdout


def test_info_json_on_resemblyzer_weights(capsys):
    from rtclone.checkpoints import resemblyzer_weights_path

    assert main(["info", str(resemblyzer_weights_path()), "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["ok"] and out["kind"] == "encoder" and out["format"] == "resemblyzer"
    assert out["dims"]["n_mels"] == 40 and out["n_tensors"] == 16


def test_typed_error_becomes_json_and_exit_status(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    status = main(["info", str(bad), "--json"])
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert status == 4
    assert out == {"ok": False, "error": {"code": "bad_checkpoint", "message": out["error"]["message"]}}
    assert "bad.pt" in out["error"]["message"]


def test_error_without_json_goes_to_stderr(tmp_path, capsys):
    status = main(["info", str(tmp_path / "missing.pt")])
    captured = capsys.readouterr()
    assert status == 4 and "not found" in captured.err and captured.out == ""


def test_unknown_command_is_a_usage_error():
    r = run("frobnicate")
    assert r.returncode == 2 and "invalid choice" in r.stderr


def test_clone_without_models_names_the_missing_synthesizer(tmp_path, capsys):
    status = main(["clone", "--ref", "x.wav", "--text", "hi", "-o", str(tmp_path / "o.wav"), "--models", str(tmp_path), "--json"])
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert status == 4 and out["error"]["code"] == "bad_checkpoint" and "synthesizer.pt" in out["error"]["message"]


def test_clone_with_bad_reference_is_an_audio_error(tmp_path, capsys):
    import torch

    from rtclone.checkpoints import save_model
    from rtclone.synthesizer import SynthesizerDims, Tacotron

    torch.manual_seed(0)
    save_model(Tacotron(SynthesizerDims.tiny()), tmp_path / "synthesizer.pt", "synthesizer")
    (tmp_path / "ref.wav").write_bytes(b"RIFF\x00\x00garbage")
    status = main(["clone", "--ref", str(tmp_path / "ref.wav"), "--text", "hi", "-o", str(tmp_path / "o.wav"),
                   "--models", str(tmp_path), "--json"])
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert status == 3 and out["error"]["code"] == "audio_decode"
    assert not (tmp_path / "o.wav").exists()


def test_clone_postfilter_choice(tmp_path, capsys, speech):
    """--postfilter on/off sets the cloner's filter; asking for it with Griffin-Lim is an options error."""
    import soundfile as sf
    import torch

    from rtclone.checkpoints import save_model
    from rtclone.synthesizer import SynthesizerDims, Tacotron
    from rtclone.vocoder import VocoderDims, WaveRNN

    torch.manual_seed(0)
    save_model(Tacotron(SynthesizerDims.tiny()), tmp_path / "synthesizer.pt", "synthesizer")
    sf.write(tmp_path / "ref.wav", speech("A reference voice for the test of the filter option.", voice="slt"), 16000)
    args = ["clone", "--ref", str(tmp_path / "ref.wav"), "--text", "hi", "--models", str(tmp_path), "--json", "--backend", "torch"]
    assert main([*args, "-o", str(tmp_path / "gl.wav"), "--postfilter", "on"]) == 2
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["error"]["code"] == "bad_options" and "Griffin-Lim" in out["error"]["message"]
    save_model(WaveRNN(VocoderDims(rnn_dims=32, fc_dims=32, res_blocks=1, compute_dims=16, res_out_dims=32)),
               tmp_path / "vocoder.pt", "vocoder")
    (tmp_path / "card.json").write_text(json.dumps({"vocoder": {"postfilter": True}}))
    wavs = {}
    for choice in ("on", "off", None):
        name = tmp_path / f"{choice}.wav"
        assert main([*args, "-o", str(name)] + (["--postfilter", choice] if choice else [])) == 0
        wavs[choice] = sf.read(name)[0]
    capsys.readouterr()
    assert np.array_equal(wavs["on"], wavs[None]) and not np.allclose(wavs["on"], wavs["off"])


def test_bench_synthesizer_json(capsys):
    assert main(["bench", "synthesizer", "--frames", "40", "--runs", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["frames"] == 40 and out["frames_per_s"] > 0 and 0 < out["first_chunk_s"] < 60


def test_demo_separates_built_in_voices(tmp_path, capsys):
    import shutil

    if shutil.which("flite") is None:
        pytest.skip("flite is not installed")
    assert main(["demo", "-o", str(tmp_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["same_speaker_cosine"] > out["threshold"] > out["different_speaker_cosine"]
    assert len(list(tmp_path.glob("ref-*.wav"))) == 3
    # the shipped default models clone the first voice: a wav of speech-like length, voice-like
    import soundfile as sf

    wav, sr = sf.read(out["cloned"])
    assert sr == 16000 and 1.0 < len(wav) / sr < 10.0
    assert 0.3 < out["clone_similarity"] <= 1.0 and 0 < out["ttfa_s"] < 30


def test_bench_server_runs_the_latency_benchmark_on_the_fake_engine(capsys):
    assert main(["bench", "server", "--engine", "fake", "--clients", "1,2", "--requests", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["ok"] and out["engine"] == "fake" and out["batch_vocoder"] is True
    levels = {int(k): v for k, v in out["levels"].items()}
    assert sorted(levels) == [1, 2]
    for n, lv in levels.items():
        assert lv["streams"] == n  # one request per client
        assert 0 < lv["ttfa_s"]["p50"] <= lv["ttfa_s"]["p95"] < lv["wall_s"]
    assert main(["bench", "server", "--engine", "fake", "--clients", "0"]) != 0  # a clear error, not a traceback
    assert main(["bench", "server", "--engine", "fake", "--workers", "0"]) == OptionsError.exit_status  # not taken for the default


def test_train_vocoder_options(speech, tmp_path, capsys):
    from rtclone import audio

    data = tmp_path / "wavs"
    data.mkdir()
    audio.save_wav(data / "a.wav", speech("Options.", "kal16")[:4000])
    args = ["train", "vocoder", str(data), str(tmp_path / "run"), "--steps", "2", "--batch-size", "2", "--rnn-dims", "32",
            "--fc-dims", "32", "--checkpoint-every", "2", "--bf16", "--val", str(data), "--json"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["step"] == 2 and out["world_size"] == 1 and len(out["losses"]) == 2
    (row,) = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert row["step"] == 2 and 0 < row["val_loss"] < 7.0  # about ln 512 = 6.24 for a fresh 9-bit model
    bad = ["train", "vocoder", str(data), str(tmp_path / "x"), "--prune-target", "0.5", "--prune-block", "16by1", "--json"]
    assert main(bad) != 0
    err = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert not err["ok"] and err["error"]["code"] == "bad_options" and "--prune-block" in err["error"]["message"]


def test_clone_int8_decoder_choice(tmp_path, capsys, speech, monkeypatch):
    """--int8-decoder on/off overrides the card's synthesizer.decoder_int8; the cloner that clones has it set so."""
    import soundfile as sf
    import torch

    from rtclone import cli
    from rtclone.checkpoints import save_model
    from rtclone.synthesizer import SynthesizerDims, Tacotron

    torch.manual_seed(0)
    save_model(Tacotron(SynthesizerDims.tiny()), tmp_path / "synthesizer.pt", "synthesizer")
    sf.write(tmp_path / "ref.wav", speech("A reference voice for the test of the int8 option.", voice="slt"), 16000)
    (tmp_path / "card.json").write_text(json.dumps({"synthesizer": {"decoder_int8": True}}))
    made = []
    real = cli._make_cloner
    monkeypatch.setattr(cli, "_make_cloner", lambda a: made.append(real(a)) or made[-1])
    args = ["clone", "--ref", str(tmp_path / "ref.wav"), "--text", "hi", "--models", str(tmp_path), "--json"]
    for choice in ("off", None, "on"):
        assert main([*args, "-o", str(tmp_path / f"{choice}.wav")] + (["--int8-decoder", choice] if choice else [])) == 0
    capsys.readouterr()
    assert [c.decoder_int8 for c in made] == [False, True, True]
    with pytest.raises(SystemExit) as exc:  # argparse refuses other choices
        main([*args, "-o", str(tmp_path / "x.wav"), "--int8-decoder", "maybe"])
    assert exc.value.code == 2 and "--int8-decoder" in capsys.readouterr().err


def test_embed_several_recordings_and_clone_from_voice_files(tmp_path, capsys, speech):
    """`rtclone embed A B` stores one voice (the mean of both); `rtclone clone --ref` takes that voice file, and
    repeated --ref clones from the same mean: the same audio."""
    import soundfile as sf
    import torch

    from rtclone.checkpoints import load_encoder, save_model
    from rtclone.encoder import embed_file
    from rtclone.synthesizer import SynthesizerDims, Tacotron
    from rtclone.voicefile import load_embedding

    torch.manual_seed(0)
    save_model(Tacotron(SynthesizerDims.tiny()), tmp_path / "synthesizer.pt", "synthesizer")
    refs = [tmp_path / "a.wav", tmp_path / "b.wav"]
    sf.write(refs[0], speech("A reference voice for the test of the voice files.", voice="rms"), 16000)
    sf.write(refs[1], speech("Another sentence in the same voice, a little longer than the first.", voice="rms"), 16000)
    assert main(["embed", *map(str, refs), "-o", str(tmp_path / "me.voice"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    stored, meta = load_embedding(tmp_path / "me.voice")
    enc = load_encoder()
    mean = embed_file(enc, refs[0]) + embed_file(enc, refs[1])
    np.testing.assert_allclose(stored, mean / np.linalg.norm(mean), atol=1e-5)
    assert out["dim"] == 256 and meta["source"] == "a.wav, b.wav"
    assert main(["verify", str(tmp_path / "me.voice"), str(refs[0]), "--json"]) == 0  # a voice file is compared as stored
    verdict = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert verdict["cosine"] == pytest.approx(float(stored @ embed_file(enc, refs[0])), abs=1e-5) and verdict["same"]
    args = ["--text", "hi", "--models", str(tmp_path), "--json", "--backend", "torch"]
    assert main(["clone", "--ref", str(tmp_path / "me.voice"), "-o", str(tmp_path / "v.wav"), *args]) == 0
    assert main(["clone", "--ref", str(refs[0]), "--ref", str(refs[1]), "-o", str(tmp_path / "r.wav"), *args]) == 0
    assert main(["clone", "--ref", str(refs[0]), "-o", str(tmp_path / "one.wav"), *args]) == 0
    capsys.readouterr()
    v, r, one = (sf.read(tmp_path / f"{n}.wav")[0] for n in ("v", "r", "one"))
    np.testing.assert_allclose(v, r, atol=1e-4)
    assert not np.allclose(r, one, atol=1e-3)
    (tmp_path / "bad.voice").write_bytes(b"RTCVOICE" + b"\x00" * 30)
    assert main(["clone", "--ref", str(tmp_path / "bad.voice"), "-o", str(tmp_path / "x.wav"), *args]) == 4
    err = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["error"]
    assert "bad.voice" in err["message"] and not (tmp_path / "x.wav").exists()


def test_clone_streams_long_text_to_the_file_and_a_failure_leaves_no_file(tmp_path, capsys, monkeypatch, speech):
    """`rtclone clone` writes chunks as they come: a text over the 5 000-character request limit (stdin) gives
    the audio of Cloner.stream chunk for chunk; a synthesis error mid-stream leaves the earlier file untouched."""
    import io

    import soundfile as sf
    from conftest import tiny_cloner

    import rtclone.cli as cli
    from rtclone.audio import pcm16_bytes
    from rtclone.errors import SynthesisError
    from rtclone.pipeline import SynthesisOptions
    from rtclone.vocoder_gen import GriffinLimVocoder

    cloner = tiny_cloner(0)
    cloner.vocoder = GriffinLimVocoder()
    cloner.tacotron_overrides["stop_threshold"] = 1e-6  # each chunk stops at once: the test is about the plumbing
    monkeypatch.setattr(cli, "_make_cloner", lambda args: cloner)
    sf.write(tmp_path / "ref.wav", speech("A reference voice for the test of long texts.", voice="slt"), 16000)
    text = " ".join(f"Sentence number {i} is here and it goes on for a while, with a comma or two, until it ends." for i in range(56))
    assert len(text) > SynthesisOptions.max_chars
    monkeypatch.setattr(sys, "stdin", io.StringIO(text))
    out = tmp_path / "long.wav"
    assert main(["clone", "--ref", str(tmp_path / "ref.wav"), "-o", str(out), "--backend", "torch", "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    emb = cloner.embed(tmp_path / "ref.wav")
    want = np.concatenate(list(cloner.stream(text, emb, SynthesisOptions(backend="torch", max_chars=len(text)))))
    got, sr = sf.read(out, dtype="int16")
    assert sr == 16000 and np.array_equal(got, np.frombuffer(pcm16_bytes(want), dtype="<i2"))
    assert report["audio_s"] == pytest.approx(len(want) / 16000) and 0 < report["ttfa_s"] < report["elapsed_s"]
    before = out.read_bytes()

    def failing(text, embedding, options):
        yield np.zeros(1600, np.float32)
        raise SynthesisError("attention failed")

    monkeypatch.setattr(cloner, "stream", failing)
    assert main(["clone", "--ref", str(tmp_path / "ref.wav"), "--text", "Hi.", "-o", str(out), "--json"]) != 0
    err = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["error"]
    assert "attention failed" in err["message"] and out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"] == []


def test_unwritable_outputs_are_file_system_errors_not_tracebacks(tmp_path, capsys, speech):
    """An output in a missing folder: `clone` and `embed` name the path they could not write (exit 4, no partial
    file); an OSError no library call named (here `corpus build` under /proc) becomes the same typed error."""
    import soundfile as sf
    import torch

    from rtclone.checkpoints import save_model
    from rtclone.synthesizer import SynthesizerDims, Tacotron

    torch.manual_seed(0)
    save_model(Tacotron(SynthesizerDims.tiny()), tmp_path / "synthesizer.pt", "synthesizer")
    sf.write(tmp_path / "ref.wav", speech("A reference voice for the test of output folders.", voice="slt"), 16000)
    missing = tmp_path / "no" / "such"
    for argv in (["clone", "--ref", str(tmp_path / "ref.wav"), "--text", "hi", "--models", str(tmp_path), "--backend",
                  "torch", "-o", str(missing / "out.wav")],
                 ["embed", str(tmp_path / "ref.wav"), "-o", str(missing / "me.voice")]):  # fmt: skip
        assert main([*argv, "--json"]) == 4
        err = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["error"]
        assert err["code"] == "file_system" and err["message"] == f"cannot write {argv[-1]}: No such file or directory"
    assert not (tmp_path / "no").exists()
    assert main(["corpus", "build", "/proc/rtclone-no-such/corpus", "--json"]) == 4
    err = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["error"]
    assert err["code"] == "file_system" and "/proc/rtclone-no-such" in err["message"]
