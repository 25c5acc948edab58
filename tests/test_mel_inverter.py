"""The learned mel -> linear map for Griffin-Lim (rtclone.mel_inverter) and its training."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rtclone import audio
from rtclone.checkpoints import load_model, save_model
from rtclone.errors import InputShapeError, OptionsError
from rtclone.mel_inverter import InverterDims, InverterStream, MelInverter, spectrogram, to_magnitude
from rtclone.vocoder_gen import GriffinLimVocoder

HOP = audio.SYN_HOP


@pytest.fixture(scope="module")
def wav():
    from conftest import make_speech

    return make_speech("A learned map from mel bands back to the spectrum.", "rms")


@pytest.fixture(scope="module")
def mel(wav):
    return audio.synth_mel(wav)


def perturbed(dims: InverterDims, seed: int = 0) -> MelInverter:
    """An inverter whose correction is not zero (the untrained one's last layer is)."""
    torch.manual_seed(seed)
    m = MelInverter(dims)
    torch.nn.init.normal_(m.out.weight, std=0.05)
    return m.eval()


def test_untrained_inverter_is_the_pseudo_inverse_and_the_target_is_the_true_spectrum(wav, mel):
    inv = MelInverter(InverterDims(hidden=32, layers=2, context=2)).eval()
    got, pinv = inv.invert(mel), audio.synth_mel_to_linear(mel)
    assert got.shape == pinv.shape == (audio.SYN_N_FFT // 2 + 1, mel.shape[1])
    loud = pinv > 1e-3  # above the -80 dB floor the normalised scale clips at
    assert loud.mean() > 0.3
    assert np.allclose(20 * np.log10(got[loud]), 20 * np.log10(pinv[loud]), atol=0.01)
    # the target: the pre-emphasised STFT magnitude on the mel's scale; the mel of it is the mel
    true = to_magnitude(spectrogram(wav))
    mel_of_true = audio._normalize_db(audio._amp_to_db(audio._synth_basis() @ true) - audio.REF_LEVEL_DB)
    speech = mel > -3.0
    assert np.abs(mel_of_true - mel)[speech].max() < 0.02  # < 0.25 dB where the floor does not clip
    assert spectrogram(wav).min() >= -audio.MAX_ABS_VALUE and spectrogram(wav).max() <= audio.MAX_ABS_VALUE


@pytest.mark.parametrize("context, block, first, first_la", [(0, 32, None, None), (1, 8, None, None), (3, 32, None, None),
                                                          (2, 16, 5, None), (2, 16, 24, 0), (3, 8, 6, 1)])
def test_stream_gives_the_same_frames_however_the_mel_arrives(mel, context, block, first, first_la):
    inv = perturbed(InverterDims(hidden=32, layers=2, context=context))
    s = InverterStream(inv, block, first, first_la)
    whole = np.concatenate([s.push(mel), s.flush()], 1)
    ref = inv.invert(mel)  # other block places: equal to float32 rounding, not to the bit
    la = context if first_la is None else first_la
    cut = slice(first - (context - la), first) if la < context else slice(0, 0)  # frames that saw a repeated last frame
    keep = np.ones(mel.shape[1], bool)
    keep[cut] = False
    assert whole.shape == ref.shape and np.allclose(whole[:, keep], ref[:, keep], rtol=1e-3)
    if la < context:  # the first block's last frames: near what the whole context gives, not equal
        full = InverterStream(inv, block, first)
        full = np.concatenate([full.push(mel), full.flush()], 1)
        assert np.array_equal(whole[:, keep], full[:, keep])  # every other frame exactly as without the cut
        assert not np.allclose(whole[:, cut], full[:, cut], rtol=1e-3)
        assert np.abs(np.log(whole[:, cut] / full[:, cut])).mean() < 0.5
    assert not np.allclose(whole, audio.synth_mel_to_linear(mel), rtol=0.05)  # the correction acts
    for n in (1, 2, 5, 64):
        s = InverterStream(inv, block, first, first_la)
        parts = [s.push(mel[:, i : i + n]) for i in range(0, mel.shape[1], n)]
        made = sum(p.shape[1] for p in parts)
        assert made >= mel.shape[1] - context - block + 1  # at most the look-ahead and a block are held back
        if first is not None and n == 1:  # one frame at a time: the first block comes as soon as its look-ahead is in
            assert [i for i, p in enumerate(parts) if p.shape[1]][0] == first + la - 1 and parts[first + la - 1].shape[1] == first
        got = np.concatenate(parts + [s.flush()], 1)
        assert got.shape == whole.shape and np.array_equal(got, whole)
    s = InverterStream(inv)
    assert s.flush().shape == (inv.dims.n_freq, 0) and s.push(mel[:, :0]).shape == (inv.dims.n_freq, 0)


def test_inverter_shapes_and_dims_are_checked(mel):
    inv = MelInverter(InverterDims(hidden=16, layers=1, context=2))
    with pytest.raises(InputShapeError):
        inv(torch.zeros(1, 40, 10))
    with pytest.raises(InputShapeError):
        inv(torch.zeros(1, 80, 4))  # not more than 2 * context frames
    for bad in ({"block": 0}, {"first": 0}, {"block": 2.5}, {"first_lookahead": -1}, {"first_lookahead": True}):
        with pytest.raises(ValueError):
            InverterStream(inv, **bad)
    assert inv(torch.zeros(2, 80, 9)).shape == (2, 401, 5)
    for bad in ({"hidden": 0}, {"context": -1}, {"layers": True}, {"n_mels": 40}, {"n_freq": 513}):
        with pytest.raises(ValueError):
            InverterDims(**bad)


def test_griffin_lim_with_an_inverter_streams_like_the_whole_and_uses_its_magnitudes(mel, tmp_path):
    inv = perturbed(InverterDims(hidden=32, layers=2, context=2), seed=1)
    with torch.no_grad():  # a ripple of +-10 dB across frequency (period 400 Hz) that Griffin-Lim can follow
        inv.out.bias.copy_(0.8 * torch.sin(2 * np.pi * torch.arange(401) / 20))
    gl = GriffinLimVocoder(n_iter=8, inverter=inv)
    with pytest.raises(OptionsError):  # the lifter acts on the pseudo-inverse only: asking for both is an error
        GriffinLimVocoder(formants=0.3, inverter=inv)
    ref = np.concatenate(list(gl.stream([mel], seed=3, fade_out=0.0)))
    assert ref.shape == ((mel.shape[1] - 1) * HOP,)
    for n in (1, 7, 30):
        pieces = [mel[:, i : i + n] for i in range(0, mel.shape[1], n)]
        assert np.array_equal(np.concatenate(list(gl.stream(pieces, seed=3, fade_out=0.0))), ref)
    pulled = []  # the first audio waits for the first segment and its right context, not for the inverter's look-ahead

    def frames():
        for i in range(mel.shape[1]):
            pulled.append(i)
            yield mel[:, i : i + 1]

    first = next(gl.stream(frames(), fade_out=0.0))
    assert len(pulled) == gl.segments.first + gl.segments.right and len(first) == gl.segments.first * HOP
    plain = np.concatenate(list(GriffinLimVocoder(n_iter=8).stream([mel], seed=3, fade_out=0.0)))
    assert not np.allclose(ref, plain, atol=1e-3)
    whole = GriffinLimVocoder(n_iter=8, inverter=inv, segments=None).generate(mel, seed=3, fade_out=0.0)
    direct = audio.griffin_lim(mel, n_iter=8, seed=3, inverter=inv)[: len(whole)]
    assert np.allclose(whole, direct * min(1.0, GriffinLimVocoder.peak / np.abs(direct).max()), atol=1e-6)
    # the magnitudes Griffin-Lim was given: its output's spectrum is nearer the inverter's than the pseudo-inverse's
    got = np.abs(audio._stft_frames(audio.pre_emphasis(direct.astype(np.float64)), audio.SYN_N_FFT, HOP, np.float64)).T
    n = min(got.shape[1], mel.shape[1])
    mine, pinv = inv.invert(mel)[:, :n], audio.synth_mel_to_linear(mel)[:, :n]
    loud = (mine > 1e-2) | (pinv > 1e-2)  # above -60 dB, away from the floors
    db = lambda x: 20 * np.log10(np.maximum(x[:, :n][loud], 1e-4))  # noqa: E731
    assert loud.mean() > 0.1
    assert np.abs(db(got) - db(mine)).mean() < 0.8 * np.abs(db(got) - db(pinv)).mean()


def test_a_model_folders_inverter_is_loaded_for_griffin_lim(tmp_path):
    from rtclone.pipeline import Cloner
    from rtclone.synthesizer import SynthesizerDims, Tacotron

    torch.manual_seed(0)
    save_model(Tacotron(SynthesizerDims(embed_dims=32, encoder_dims=16, decoder_dims=32, prenet_dims=16, lstm_dims=32,
                                        postnet_dims=16, num_highways=1)), tmp_path / "synthesizer.pt", "synthesizer")  # fmt: skip
    assert Cloner.from_dir(tmp_path).vocoder.inverter is None
    inv = perturbed(InverterDims(hidden=16, layers=1, context=1))
    save_model(inv, tmp_path / "inverter.pt", "inverter", meta={"step": 7})
    loaded = Cloner.from_dir(tmp_path).vocoder.inverter
    assert isinstance(loaded, MelInverter) and not loaded.training and loaded.dims == inv.dims
    x = torch.randn(1, 80, 12)
    assert torch.equal(loaded(x), inv(x))


def test_training_beats_the_pseudo_inverse_on_new_speech_and_resumes(tmp_path):
    from conftest import make_speech
    from rtclone.train.inverter import prepare_pairs, train_inverter

    paths = []
    for i, (text, voice) in enumerate([("One voice speaks these words.", "slt"), ("Another reads a second line.", "awb"),
                                       ("A third sentence for the map.", "kal")]):  # fmt: skip
        audio.save_wav(tmp_path / f"{i}.wav", make_speech(text, voice))
        paths.append(tmp_path / f"{i}.wav")
    new = make_speech("A learned map from mel bands back to the spectrum.", "slt")  # a sentence it never hears
    audio.save_wav(tmp_path / "val.wav", new)
    train = prepare_pairs(paths, tmp_path / "train.npz", jobs=1)
    val = prepare_pairs([tmp_path / "val.wav"], tmp_path / "val.npz")
    assert train["offsets"][-1] == len(train["mel"]) == len(train["mag"]) and train["mel"].shape[1] == 80
    assert np.array_equal(np.load(tmp_path / "train.npz")["mag"], train["mag"])
    assert np.array_equal(val["mag"].T, spectrogram(audio.load_audio(tmp_path / "val.wav")).astype(np.float16))
    dims = InverterDims(hidden=32, layers=2, context=1)
    out = tmp_path / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        path = train_inverter(train, out, val=val, steps=400, batch=16, frames=16, lr=3e-3, dims=dims, checkpoint_every=200)
        rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
        assert [r["step"] for r in rows] == [200, 400]
        assert rows[-1]["val_loss"] < 0.95 * rows[-1]["val_pinv"]  # (measured 0.91x) nearer the true spectrum than where it started
        assert rows[-1]["loss"] < 0.9 * rows[0]["loss"]
        first = load_model(path, "inverter")
        train_inverter(train, out, val=val, steps=450, batch=16, frames=16, lr=3e-3, dims=dims, checkpoint_every=200)
    finally:
        torch.set_num_threads(threads)
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [200, 400, 450]  # resumed at 400
    assert not torch.equal(load_model(path, "inverter").out.weight, first.out.weight)


def test_cli_trains_an_inverter_on_a_corpus_and_the_cloner_uses_it(tmp_path, capsys):
    from rtclone.cli import main
    from rtclone.corpus import CorpusOptions, build_corpus, engine_available
    from rtclone.mel_inverter import fingerprint

    if not engine_available("flite"):
        pytest.skip("flite or sox is not installed")
    corpus, run = tmp_path / "corpus", tmp_path / "run"
    build_corpus(corpus, CorpusOptions(seed=1, voices=("flite-slt", "flite-rms"), utterances_per_voice=2, extra_per_voice=0,
                                       heldout_voices=1, heldout_sentences=1))  # fmt: skip
    args = ["train", "inverter", str(corpus), str(run), "--steps", "40", "--batch", "8", "--frames", "8", "--hidden", "16",
            "--layers", "1", "--context", "1", "--checkpoint-every", "20", "--json"]  # fmt: skip
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    model = load_model(out["checkpoint"], "inverter")
    assert model.dims == InverterDims(hidden=16, layers=1, context=1)
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [20, 40] and all(r["val_pinv"] > 0 for r in rows)
    pairs = np.load(run / "pairs-eval.npz")  # the held-out split validates, cached beside the run
    manifest = json.loads((corpus / "manifest.json").read_text())
    held = [u for u in manifest["utterances"] if u["split"] == "eval"]
    assert len(pairs["offsets"]) == len(held) + 1 and len(pairs["mel"]) == pairs["offsets"][-1]
    assert main(args[:4] + ["--steps", "60"] + args[6:]) == 0  # resumes from the cached pairs and step 40
    assert [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()] == [20, 40, 60]
    capsys.readouterr()
    assert main(["train", "inverter", str(tmp_path / "nothing"), str(tmp_path / "r2")]) != 0  # not a corpus: a clear error
    assert "not a built corpus" in capsys.readouterr().err
    assert fingerprint(load_model(run / "inverter.pt", "inverter")) != fingerprint(model)


def test_gta_pairs_pair_each_export_mel_with_its_audios_true_spectrum_and_the_cli_trains_on_them(tmp_path, capsys):
    from conftest import make_speech
    from rtclone.cli import main
    from rtclone.corpus import CorpusOptions, build_corpus, engine_available
    from rtclone.errors import OptionsError
    from rtclone.train.inverter import prepare_gta_pairs

    if not engine_available("flite"):
        pytest.skip("flite or sox is not installed")
    export = tmp_path / "gta"
    (export / "gta").mkdir(parents=True)
    items, wavs = [], []
    for i, voice in enumerate(("slt", "rms")):
        wav = make_speech(f"Teacher forced frames, number {i + 1}.", voice)
        np.save(tmp_path / f"a{i}.npy", wav)
        mel = audio.synth_mel(wav) * 0.9  # a smoothed stand-in for the synthesizer's mels
        np.save(export / "gta" / f"u{i}.npy", mel)
        items.append({"id": f"u{i}", "mel": f"gta/u{i}.npy", "audio": str(tmp_path / f"a{i}.npy"), "frames": mel.shape[1]})
        wavs.append(wav)
    (export / "metadata.json").write_text(json.dumps({"format": "rtclone-gta", "version": 1, "items": items}))
    pairs = prepare_gta_pairs(export, tmp_path / "pairs.npz")
    first = slice(0, pairs["offsets"][1])
    assert np.array_equal(pairs["mel"][first], (audio.synth_mel(wavs[0]) * 0.9).T.astype(np.float16))
    assert np.array_equal(pairs["mag"][first], spectrogram(wavs[0]).T.astype(np.float16))
    np.save(export / "gta" / "u1.npy", np.zeros((80, 5), np.float32))  # frames that do not fit the audio
    with pytest.raises(OptionsError, match="frames"):
        prepare_gta_pairs(export, tmp_path / "bad.npz")
    with pytest.raises(OptionsError, match="GTA export"):
        prepare_gta_pairs(tmp_path / "nowhere", tmp_path / "bad.npz")
    np.save(export / "gta" / "u1.npy", audio.synth_mel(wavs[1]))
    corpus = tmp_path / "corpus"
    build_corpus(corpus, CorpusOptions(seed=1, voices=("flite-slt", "flite-rms"), utterances_per_voice=2, extra_per_voice=0,
                                       heldout_voices=1, heldout_sentences=1))  # fmt: skip
    init = perturbed(InverterDims(hidden=16, layers=1, context=1))
    save_model(init, tmp_path / "init.pt", "inverter")
    run = tmp_path / "run"
    assert main(["train", "inverter", str(corpus), str(run), "--gta", str(export), "--init", str(tmp_path / "init.pt"),
                 "--steps", "20", "--batch", "4", "--frames", "8", "--checkpoint-every", "10", "--json"]) == 0  # fmt: skip
    assert (run / "pairs-gta.npz").is_file() and not (run / "pairs-train.npz").exists()
    with np.load(run / "pairs-gta.npz") as f:
        assert f["offsets"][-1] == pairs["offsets"][-1]
    trained = load_model(run / "inverter.pt", "inverter")
    assert trained.dims == init.dims  # the --init model's dims, not the defaults
    assert not torch.equal(trained.out.weight, init.out.weight)
    capsys.readouterr()
