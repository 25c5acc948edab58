"""The Cloner pipeline on tiny seeded random models: streaming behaviour, options, bad input."""

import json
import warnings

import numpy as np
import pytest
from conftest import TINY_TACOTRON_OVERRIDES, check_card_flag, tiny_cloner

from rtclone.errors import CheckpointError, InputShapeError, LimitExceededError, OptionsError, TextError
from rtclone.pipeline import Cloner, SynthesisOptions

TACO = TINY_TACOTRON_OVERRIDES


@pytest.fixture(scope="module")
def cloner():
    return tiny_cloner(0)


def test_stream_yields_audio_and_equals_clone(cloner, speech):
    ref = speech("The quick brown fox jumps over the lazy dog near the river bank.", voice="slt")
    emb = cloner.embed(ref, 16000)
    assert emb.shape == (256,) and abs(np.linalg.norm(emb) - 1) < 1e-5
    opts = SynthesisOptions(seed=3, backend="torch")
    text = "Hello there. This is a second sentence."
    chunks = list(cloner.stream(text, emb, opts))
    assert len(chunks) >= 2 and all(c.dtype == np.float32 and c.ndim == 1 for c in chunks)
    audio = np.concatenate(chunks)
    assert np.all(np.isfinite(audio)) and np.abs(audio).max() <= 1.0
    # duration follows the length guard: 2 frames per symbol (+EOS) per sentence chunk, 200 samples per frame
    assert 0.25 < len(audio) / 16000 < 3.0
    again = cloner.clone(text, emb, opts)
    assert np.array_equal(again.audio, audio), "same seed, same audio"
    assert again.ttfa_s <= again.elapsed_s and again.rtf > 0
    other = cloner.clone(text, emb, SynthesisOptions(seed=4, backend="torch")).audio
    assert not np.array_equal(other, audio)


def test_griffin_lim_audio_streams_within_a_text_chunk(cloner):
    """The default vocoder (Griffin-Lim) yields audio while the synthesizer is still decoding a chunk."""
    from rtclone.vocoder_gen import GriffinLimVocoder

    gl_cloner = Cloner(cloner.encoder, cloner.synthesizer, GriffinLimVocoder(n_iter=4), tacotron_overrides=TACO)
    emb = np.ones(256, np.float32) / 16.0
    text = "Streaming audio starts early"  # one text chunk; ~60 frames at the tiny model's 2 frames per symbol
    chunks = list(gl_cloner.stream(text, emb, SynthesisOptions(seed=1)))
    plan = gl_cloner.vocoder.segments
    assert len(chunks) >= 2 and len(chunks[0]) == plan.first * 200  # the first segment, before the chunk ended
    whole = Cloner(cloner.encoder, cloner.synthesizer, GriffinLimVocoder(n_iter=4, segments=None), tacotron_overrides=TACO)
    ref = list(whole.stream(text, emb, SynthesisOptions(seed=1)))
    assert len(ref) == 1 and len(ref[0]) == sum(map(len, chunks))  # the same mel, the same length


def test_vocode_is_the_stream_vocoder_on_a_whole_mel(cloner):
    rng = np.random.default_rng(0)
    mel = rng.uniform(-4, 4, (80, 23)).astype(np.float32)
    opts = SynthesisOptions(seed=7, backend="torch")
    ref = cloner.vocoder.generate(mel, batched=False, seed=7, backend="torch", fade_out=opts.fade_out_s)
    out = cloner.vocode(mel, opts)
    assert out.dtype == np.float32 and len(out) == len(ref) > 0
    np.testing.assert_allclose(out, np.clip(ref, -1, 1), atol=1e-6)
    assert not np.array_equal(out, cloner.vocode(mel, SynthesisOptions(seed=8, backend="torch")))


@pytest.mark.parametrize("text, err", [("", TextError), ("   \n", TextError), ("🙂🙂", TextError), ("a" * 6000, LimitExceededError)])
def test_bad_text(cloner, text, err):
    with pytest.raises(err):
        list(cloner.stream(text, np.ones(256, np.float32) / 16, SynthesisOptions(backend="torch")))


@pytest.mark.parametrize("emb", [np.ones(255, np.float32), np.full(256, np.nan, np.float32)])
def test_bad_embedding(cloner, emb):
    with pytest.raises(InputShapeError):
        list(cloner.stream("Hello.", emb, SynthesisOptions(backend="torch")))


def test_options_are_validated():
    with pytest.raises(OptionsError):
        SynthesisOptions(backend="gpu")
    with pytest.raises(OptionsError):
        SynthesisOptions.from_dict({"seed": -1})
    with pytest.raises(OptionsError, match="unknown option"):
        SynthesisOptions.from_dict({"sede": 1})
    assert SynthesisOptions.from_dict({"seed": 5}).seed == 5


def test_a_sentence_is_one_text_chunk_unless_a_first_chunk_cut_is_asked(cloner, monkeypatch):
    import rtclone.text

    seen = []
    real = rtclone.text.split_sentences
    monkeypatch.setattr(rtclone.text, "split_sentences", lambda *a, **k: seen.append(real(*a, **k)) or seen[-1])
    emb = np.ones(256, np.float32) / 16.0
    text = "one two three four five six seven eight"
    for opts in (SynthesisOptions(seed=0, backend="torch"), SynthesisOptions(seed=0, backend="torch", first_chunk_words=3)):
        list(cloner.stream(text, emb, opts))
    assert seen == [[text], ["one two three", "four five six seven eight"]]
    with pytest.raises(OptionsError):
        SynthesisOptions(first_chunk_words=-1)


def test_missing_models_are_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="synthesizer.pt"):
        Cloner.from_dir(tmp_path)
    with pytest.raises(CheckpointError, match="not found"):
        Cloner.from_dir(tmp_path / "nope")


def test_exported_pipeline_equals_torch_pipeline(cloner, tmp_path, speech):
    """rtclone export → Cloner.from_dir(artifacts): same seed, same audio as the torch pipeline."""
    from rtclone.checkpoints import save_model
    from rtclone.export import export_checkpoints

    save_model(cloner.synthesizer, tmp_path / "synthesizer.pt", "synthesizer")
    save_model(cloner.vocoder, tmp_path / "vocoder.pt", "vocoder")
    export_checkpoints(tmp_path / "onnx", synthesizer=tmp_path / "synthesizer.pt", vocoder=tmp_path / "vocoder.pt", format="onnx")
    art = Cloner.from_dir(tmp_path / "onnx")
    art.tacotron_overrides = dict(TACO)
    ref = speech("A short sentence for the speaker embedding, spoken slowly.", voice="rms")
    emb_t, emb_a = cloner.embed(ref, 16000), art.embed(ref, 16000)
    assert float(emb_t @ emb_a) > 0.99999
    opts = SynthesisOptions(seed=7, backend="torch")
    a = cloner.clone("Export parity.", emb_t, opts).audio
    b = art.clone("Export parity.", emb_t, opts).audio
    assert a.shape == b.shape and np.max(np.abs(a - b)) < 1e-3
    # an exported set decodes as exported: int8 asked at load is refused with the reason, off is a no-op
    with pytest.raises(OptionsError, match="Tacotron module"):
        Cloner.from_dir(tmp_path / "onnx", decoder_int8=True)
    assert Cloner.from_dir(tmp_path / "onnx", decoder_int8=False).decoder_int8 is False
    with pytest.raises(OptionsError, match="decoder_int8"):
        Cloner.from_dir(tmp_path / "onnx", decoder_int8=1)


def test_default_models_prefer_the_shipped_onnx_set(cloner, tmp_path, monkeypatch):
    from rtclone import pipeline
    from rtclone.checkpoints import save_model
    from rtclone.export import export_checkpoints
    from rtclone.runners import ArtifactSynthesizer

    monkeypatch.setattr(pipeline, "DEFAULT_MODELS_DIR", tmp_path)
    with pytest.raises(CheckpointError, match="no default synthesizer"):
        Cloner.from_default()
    save_model(cloner.synthesizer, tmp_path / "synthesizer.pt", "synthesizer")
    assert not isinstance(Cloner.from_default().synthesizer, ArtifactSynthesizer)  # checkpoints only
    export_checkpoints(tmp_path / "onnx", synthesizer=tmp_path / "synthesizer.pt", format="onnx")
    assert isinstance(Cloner.from_default().synthesizer, ArtifactSynthesizer)
    # the card's post-filter flag holds for the exported set too, and only with a trained vocoder
    (tmp_path / "card.json").write_text('{"vocoder": {"postfilter": true}}')
    assert Cloner.from_default().postfilter is False  # Griffin-Lim: nothing to filter
    save_model(cloner.vocoder, tmp_path / "vocoder.pt", "vocoder")
    export_checkpoints(tmp_path / "onnx", synthesizer=tmp_path / "synthesizer.pt", vocoder=tmp_path / "vocoder.pt", format="onnx")
    assert Cloner.from_default().has_trained_vocoder and Cloner.from_default().postfilter is True
    with pytest.raises(OptionsError, match="Tacotron module"):  # the exported default refuses int8 asked at load
        Cloner.from_default(decoder_int8=True)


def test_speaker_contrast_conditions_on_the_embedding_pushed_from_the_mean(tmp_path, monkeypatch):
    """Contrast a: the synthesizer hears normalise(e + a (e - mean)); same audio as that embedding given at a = 0;
    the mean comes from a model folder's speaker_mean.npy; a missing, corrupt or wrong-sized mean is a clear error."""
    from rtclone import synthesizer as synthesizer_module
    from rtclone.checkpoints import save_model

    cl = tiny_cloner(0)
    rng = np.random.default_rng(5)
    e = rng.normal(size=256).astype(np.float32)
    e /= np.linalg.norm(e)
    mean = (0.8 * np.abs(rng.normal(size=256)) / 16).astype(np.float32)
    opts = SynthesisOptions(seed=2, backend="torch")
    assert np.array_equal(cl.conditioning(e), e)  # a = 0: the embedding itself
    with pytest.raises(OptionsError, match="speaker_mean"):
        cl.speaker_contrast = 0.5  # no mean known
    assert cl.speaker_contrast == 0.0
    cl.speaker_mean = mean
    cl.speaker_contrast = 0.5
    want = np.array([e[i] + 0.5 * (e[i] - mean[i]) for i in range(256)])
    want /= np.sqrt(sum(x * x for x in want))
    got = cl.conditioning(e)
    assert got.dtype == np.float32 and np.allclose(got, want, atol=1e-6) and not np.allclose(got, e, atol=1e-3)
    heard = []
    real = synthesizer_module.stream
    monkeypatch.setattr(synthesizer_module, "stream", lambda model, text, emb, o: heard.append(emb) or real(model, text, emb, o))
    pushed = cl.clone("Hello there.", e, opts).audio
    cl.speaker_contrast = 0.0
    assert np.array_equal(cl.clone("Hello there.", got, opts).audio, pushed)  # the conditioning is all it changes
    cl.clone("Hello there.", e, opts)
    assert len(heard) == 3 and np.array_equal(heard[0], got) and np.array_equal(heard[1], got) and np.array_equal(heard[2], e)
    for bad in (-0.1, 5.0, float("nan"), True, "1"):
        with pytest.raises(OptionsError, match="speaker_contrast"):
            cl.speaker_contrast = bad
    assert cl.speaker_contrast == 0.0
    cl.speaker_mean, cl.speaker_contrast = e / 2, 1.0  # e + (e - e/2) = 1.5 e: normalised back to e
    assert np.allclose(cl.conditioning(e), e, atol=1e-6)
    cl.speaker_mean = 2 * e  # e + (e - 2e) = 0: nothing to contrast
    with pytest.raises(InputShapeError, match="mean"):
        cl.conditioning(e)
    cl.speaker_mean = None  # taken away after the strength was set: still a clear error at synthesis
    with pytest.raises(OptionsError, match="speaker_mean"):
        cl.clone("Hello there.", e, opts)

    save_model(cl.synthesizer, tmp_path / "synthesizer.pt", "synthesizer")
    assert Cloner.from_dir(tmp_path).speaker_mean is None
    np.save(tmp_path / "speaker_mean.npy", mean)
    assert np.array_equal(Cloner.from_dir(tmp_path).speaker_mean, mean)
    for bad in (np.zeros(3, np.float32), np.full(256, np.nan, np.float32), np.array(["x"] * 256)):
        np.save(tmp_path / "speaker_mean.npy", bad)
        with pytest.raises(CheckpointError, match="speaker_mean.npy"):
            Cloner.from_dir(tmp_path)
    (tmp_path / "speaker_mean.npy").write_bytes(b"not numpy")
    with pytest.raises(CheckpointError, match="unreadable"):
        Cloner.from_dir(tmp_path)


def test_int8_decoder_switches_on_and_off_and_model_cards_turn_it_on(tmp_path, monkeypatch):
    """decoder_int8 swaps in the int8-weight decoder (same audio as quantize_decoder_int8's model gives), restores the
    very float32 model when turned off, refuses non-bools and exported synthesizers; a card's synthesizer.decoder_int8
    turns it on in from_dir, and a non-bool flag there is a CheckpointError."""
    import torch

    from rtclone.checkpoints import save_model
    from rtclone.synthesizer import quantize_decoder_int8

    from rtclone.vocoder_gen import GriffinLimVocoder

    cl = tiny_cloner(0)
    cl.tacotron_overrides, cl.vocoder = dict(TACO), GriffinLimVocoder()  # audio that follows the mel (no saturation)
    fp32 = cl.synthesizer
    e = np.random.default_rng(1).normal(size=256).astype(np.float32)
    e /= np.linalg.norm(e)
    opts = SynthesisOptions(seed=3, backend="torch")
    plain = cl.clone("Hello there.", e, opts).audio
    assert cl.decoder_int8 is False
    cl.decoder_int8 = True
    assert cl.decoder_int8 is True and cl.synthesizer is not fp32
    assert type(cl.synthesizer.decoder.res_rnn1).__module__.startswith("torch.ao.nn.quantized")
    assert isinstance(fp32.decoder.res_rnn1, torch.nn.LSTMCell)  # the float model is kept, untouched
    quant = cl.clone("Hello there.", e, opts).audio
    other = Cloner(cl.encoder, quantize_decoder_int8(fp32), GriffinLimVocoder(), tacotron_overrides=TACO)
    assert np.array_equal(other.clone("Hello there.", e, opts).audio, quant)
    assert not np.array_equal(quant, plain)  # really another computation
    cl.decoder_int8 = True  # idempotent: not quantized twice
    assert type(cl.synthesizer.decoder.res_rnn1).__module__.startswith("torch.ao.nn.quantized")
    cl.decoder_int8 = False
    assert cl.synthesizer is fp32 and np.array_equal(cl.clone("Hello there.", e, opts).audio, plain)
    cl.decoder_int8 = True
    cl.synthesizer = other.synthesizer  # another model assigned while it is on: that one stays
    assert cl.decoder_int8 is False
    cl.decoder_int8 = False
    assert cl.synthesizer is other.synthesizer
    cl.synthesizer = fp32
    for bad in (1, "on", None):
        with pytest.raises(OptionsError, match="decoder_int8"):
            cl.decoder_int8 = bad
    assert cl.synthesizer is fp32

    class Exported:  # an artifact runner stands in for the Tacotron module
        dims = fp32.dims

    cl.synthesizer = Exported()
    with pytest.raises(OptionsError, match="Tacotron"):
        cl.decoder_int8 = True
    assert cl.decoder_int8 is False

    save_model(fp32, tmp_path / "synthesizer.pt", "synthesizer")
    check_card_flag(tmp_path, "synthesizer", "decoder_int8")

    # a torch without a quantized engine: asked for, a clear error; from a card, float32 with a warning
    from rtclone import synthesizer as synthesizer_module

    def no_engine(model):
        raise RuntimeError("Didn't find engine for operation quantized::linear_prepack NoQEngine")

    monkeypatch.setattr(synthesizer_module, "quantize_decoder_int8", no_engine)
    cl.synthesizer = fp32
    with pytest.raises(OptionsError, match="not available here"):
        cl.decoder_int8 = True
    assert cl.decoder_int8 is False and cl.synthesizer is fp32
    with pytest.warns(RuntimeWarning, match="float32"):
        assert Cloner.from_dir(tmp_path).decoder_int8 is False
    # an explicit choice at load wins over the card: False never quantizes (no warning), True asked is an error
    (tmp_path / "card.json").write_text(json.dumps({"synthesizer": {"decoder_int8": True}}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Cloner.from_dir(tmp_path, decoder_int8=False).decoder_int8 is False
    with pytest.raises(OptionsError, match="not available here"):
        Cloner.from_dir(tmp_path, decoder_int8=True)
    with pytest.raises(OptionsError, match="decoder_int8"):
        Cloner.from_dir(tmp_path, decoder_int8="on")


def test_voice_from_recordings_voice_files_and_several(cloner, speech, tmp_path):
    """Cloner.voice: a recording embeds as Cloner.embed does; a voice file (ours, its bytes or a .npy) gives the
    stored vector, unit length; several references give the normalised mean, as the encoder's embed_speaker;
    clone() takes any of them; bad voice files are typed errors naming the file."""
    import soundfile as sf

    from rtclone.audio import preprocess_wav
    from rtclone.encoder import embed_speaker
    from rtclone.errors import FileFormatError
    from rtclone.voicefile import save_embedding

    paths = []
    for i, text in enumerate(("The quick brown fox jumps over the lazy dog near the river bank.",
                              "A second recording of the same speaker, made a little later in the day.")):
        paths.append(tmp_path / f"ref{i}.wav")
        sf.write(paths[-1], speech(text, voice="slt"), 16000)
    e0, e1 = cloner.embed(paths[0]), cloner.embed(paths[1])
    assert np.array_equal(cloner.voice(paths[0]), e0) and np.array_equal(cloner.voice(str(paths[0])), e0)
    assert 0.5 < float(e0 @ e1) < 0.9999  # the same voice, not the same embedding
    save_embedding(tmp_path / "v0.voice", e0, {"source": "ref0.wav"})
    np.save(tmp_path / "v0.npy", 3.0 * e0)  # any length: a stored vector is brought to unit length
    for stored in (tmp_path / "v0.voice", (tmp_path / "v0.voice").read_bytes(), tmp_path / "v0.npy", 3.0 * e0):
        np.testing.assert_allclose(cloner.voice(stored), e0, atol=1e-6)
    both = cloner.voice(paths)
    want = (e0 + e1) / np.linalg.norm(e0 + e1)
    np.testing.assert_allclose(both, want, atol=1e-6)
    np.testing.assert_allclose(cloner.voice([tmp_path / "v0.voice", paths[1]]), want, atol=1e-6)
    speaker = embed_speaker(cloner.encoder, [preprocess_wav(p) for p in paths])  # what `rtclone embed A B` stores
    np.testing.assert_allclose(both, speaker, atol=1e-5)
    opts = SynthesisOptions(seed=1, backend="torch")
    a = cloner.clone("Hi there.", tmp_path / "v0.voice", opts).audio
    np.testing.assert_array_equal(a, cloner.clone("Hi there.", cloner.voice(tmp_path / "v0.voice"), opts).audio)
    b = cloner.clone("Hi there.", [str(p) for p in paths], opts).audio
    np.testing.assert_array_equal(b, cloner.clone("Hi there.", both, opts).audio)
    assert not np.array_equal(a, b)
    # bad voice files and combinations
    (tmp_path / "cut.voice").write_bytes((tmp_path / "v0.voice").read_bytes()[:-7])
    np.save(tmp_path / "short.npy", np.ones(10, np.float32))
    np.save(tmp_path / "zero.npy", np.zeros(256, np.float32))
    with pytest.raises(FileFormatError, match="cut.voice"):
        cloner.voice(tmp_path / "cut.voice")
    with pytest.raises(FileFormatError, match="truncated"):
        cloner.voice(b"RTCVOICE\x01\x00")
    with pytest.raises(InputShapeError, match=r"short\.npy.*\(256,\)"):
        cloner.voice([paths[0], tmp_path / "short.npy"])
    with pytest.raises(InputShapeError, match="zero"):
        cloner.voice(tmp_path / "zero.npy")
    with pytest.raises(InputShapeError, match="cancel"):
        cloner.voice([e0, -e0])
    with pytest.raises(InputShapeError, match="no reference"):
        cloner.voice([])
