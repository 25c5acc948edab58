"""Exported artifacts (ONNX, TorchScript) against the torch modules, and artifact validation.

Tiny seeded models built from their dims dataclasses (BatchNorm statistics randomised so the
folded normalisation is exercised); the pretrained GE2E encoder is checked on real partial mels.
Every comparison states its max abs error bound; inputs use batch/time sizes unlike the export
examples, so the dynamic axes are exercised too.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from rtclone.encoder import EncoderDims, SpeakerEncoder
from rtclone.errors import ArtifactError
from rtclone.export import ARTIFACT_VERSION, MANIFEST, OPSET, export_models, read_manifest
from rtclone.runners import OnnxRunner, TorchScriptRunner, load_runner, prenet_masks
from rtclone.synthesizer import SynthesizerDims, Tacotron, TacotronOptions, encode_texts, synthesize
from rtclone.vocoder import VocoderDims, WaveRNN

FORMATS = ("onnx", "torchscript")
# Max abs error allowed between an artifact and its torch module (float32; ONNX/TorchScript may
# fuse or reorder sums, so a few ulps of the values' range per layer).
TOL = 1e-4
ENC_DIMS = EncoderDims(n_mels=40, hidden=24, n_layers=2, embed=16)
VOC_DIMS = VocoderDims(bits=6, rnn_dims=16, fc_dims=16, compute_dims=8, res_out_dims=8, res_blocks=2,
                       upsample_factors=(2, 2), hop_length=4, pad=2)


def _randomize_bn(model: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.3)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    enc = SpeakerEncoder(ENC_DIMS).eval()
    syn = Tacotron(SynthesizerDims.tiny()).eval()
    syn.set_r(3)
    voc = WaveRNN(VOC_DIMS).eval()
    _randomize_bn(syn, 1)
    _randomize_bn(voc, 2)
    return enc, syn, voc


@pytest.fixture(scope="module")
def exported(models, tmp_path_factory):
    enc, syn, voc = models
    out = {}
    for fmt in FORMATS:
        d = tmp_path_factory.mktemp(fmt)
        manifest = export_models(d, encoder=enc, synthesizer=syn, vocoder=voc, format=fmt)
        out[fmt] = (d, manifest, load_runner(d))
    return out


def _maxerr(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(torch.as_tensor(b).detach().numpy(), np.float64))))


@pytest.mark.parametrize("fmt", FORMATS)
def test_manifest_and_runner_class(models, exported, fmt):
    d, manifest, runner = exported[fmt]
    assert isinstance(runner, OnnxRunner if fmt == "onnx" else TorchScriptRunner)
    assert sorted(manifest["components"]) == sorted(["encoder", "text_encoder", "decoder_step", "postnet",
                                                     "vocoder_cond", "vocoder_step", "vocoder_loop"])
    assert read_manifest(d) == json.loads(json.dumps(manifest))
    assert manifest["artifact_version"] == ARTIFACT_VERSION and manifest["sample_rate"] == 16000
    assert manifest["opset"] == (OPSET if fmt == "onnx" else None)
    assert runner.r == 3 and runner.dims("vocoder")["upsample_factors"] == [2, 2]
    assert runner.vocoder_lookahead == models[2].lookahead
    assert runner.meta["encoder"]["dims"] == {"n_mels": 40, "hidden": 24, "n_layers": 2, "embed": 16}


@pytest.mark.parametrize("fmt", FORMATS)
def test_encoder_parity(models, exported, fmt):
    enc = models[0]
    runner = exported[fmt][2]
    x = torch.rand(3, 37, 40) * 2.0  # (N, T, n_mels) power mels
    got = runner.embed_mels(x.numpy())
    assert got.shape == (3, 16)
    assert _maxerr(got, enc(x)) < TOL


@pytest.mark.parametrize("fmt", FORMATS)
def test_text_encoder_parity_with_seeded_masks(models, exported, fmt):
    syn, runner = models[1], exported[fmt][2]
    chars = encode_texts(["Hello there.", "Hi!"], syn.dims.num_chars)  # (2, T) padded with 0
    spk = torch.nn.functional.normalize(torch.randn(2, 256), dim=1)
    ref_mem, ref_keys = syn.encode(chars, spk, torch.Generator().manual_seed(7))
    memory, keys = runner.encode_text(chars.numpy(), spk.numpy(), torch.Generator().manual_seed(7))
    assert memory.shape == tuple(ref_mem.shape) and keys.shape == tuple(ref_keys.shape)
    assert _maxerr(memory, ref_mem) < TOL and _maxerr(keys, ref_keys) < TOL
    # another seed draws other dropout masks: the outputs must differ clearly (the masks are live inputs)
    other, _ = runner.encode_text(chars.numpy(), spk.numpy(), torch.Generator().manual_seed(8))
    assert _maxerr(other, ref_mem) > 0.05


@pytest.mark.parametrize("fmt", FORMATS)
def test_decoder_step_parity_over_steps(models, exported, fmt):
    syn, runner = models[1], exported[fmt][2]
    dec = syn.decoder
    g = torch.Generator().manual_seed(0)
    B, T, ctx = 3, 11, syn.dims.encoder_dims + 256
    memory, keys = torch.randn(B, T, ctx, generator=g), torch.randn(B, T, syn.dims.decoder_dims, generator=g)
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[1, 8:] = False  # a padded item
    state = dec.init_state(memory)
    np_state = runner.initial_state(memory.numpy())
    g_ref, g_run = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    with torch.no_grad():
        for _ in range(4):
            mels, stop, attn, state = dec.step(state, memory, keys, mask, syn.r, g_ref)
            got_m, got_s, got_a, np_state = runner.decoder_step(np_state, memory.numpy(), keys.numpy(), mask.numpy(), g_run)
            assert got_m.shape == (B, 80, 3)
            assert _maxerr(got_m, mels) < TOL and _maxerr(got_s, stop) < TOL and _maxerr(got_a, attn) < TOL
    assert np.all(got_a[1, 8:] == 0.0)
    ref = {"prev_frame": state.prev_frame, "attn_hidden": state.attn_hidden, "rnn1_h": state.rnn1[0],
           "rnn1_c": state.rnn1[1], "rnn2_h": state.rnn2[0], "rnn2_c": state.rnn2[1], "context": state.context,
           "cumulative": state.cumulative}
    for name, want in ref.items():
        assert _maxerr(np_state[name], want) < TOL, name


@pytest.mark.parametrize("fmt", FORMATS)
def test_postnet_and_vocoder_conditioning_parity(models, exported, fmt):
    _, syn, voc = models
    runner = exported[fmt][2]
    mels = torch.randn(1, 80, 23)
    assert _maxerr(runner.postnet(mels.numpy()), syn.postnet_mel(mels)) < TOL
    window = torch.randn(2, 80, 7 + 2 * VOC_DIMS.pad) * 2.0  # (B, feat, n + 2 pad), synthesizer range
    cond = runner.vocoder_conditioning(window.numpy())
    assert cond.shape == (2, 7 * 4, 80 + 8)
    assert _maxerr(cond, voc.conditioning(window)) < TOL


@pytest.mark.parametrize("fmt", FORMATS)
def test_vocoder_step_matches_teacher_forced_forward(models, exported, fmt):
    voc, runner = models[2], exported[fmt][2]
    n, B = 3, 2
    mels = torch.randn(B, 80, n + 2 * VOC_DIMS.pad)
    x = torch.rand(B, n * 4) * 2 - 1  # previous samples (model-input domain)
    with torch.no_grad():
        logits = voc(x, mels)  # (B, S, n_classes)
        cond = voc.conditioning(mels).numpy()  # (B, S, cond)
    h1 = h2 = np.zeros((B, 16), np.float32)
    for t in range(x.shape[1]):
        out, h1, h2 = runner.vocoder_step(x[:, t:t + 1].numpy(), cond[:, t], h1, h2)
        assert out.shape == (B, 64)
        assert _maxerr(out, logits[:, t]) < TOL, t


@pytest.mark.parametrize("fmt", FORMATS)
def test_vocoder_loop_weights_drive_the_native_kernel(models, exported, fmt):
    """The exported loop weights are the model's; the native loop on the artifact's conditioning
    makes the torch reference loop's samples (same uniforms)."""
    from rtclone.kernels import cpu

    voc, runner = models[2], exported[fmt][2]
    state, ref_state = runner.vocoder_loop_state(), voc.state_dict()
    assert len(state) == 16 and all(torch.equal(v, ref_state[k]) for k, v in state.items())
    if not cpu.available():
        pytest.skip(f"native kernel unavailable: {cpu.unavailable_reason()}")
    window = torch.randn(1, 80, 10 + 2 * VOC_DIMS.pad) * 2.0
    cond = torch.from_numpy(runner.vocoder_conditioning(window.numpy()))  # (1, 40, cond)
    uniforms = torch.rand(1, cond.shape[1], 2, generator=torch.Generator().manual_seed(4))
    got, _ = runner.native_vocoder(block=(16, 1)).generate(cond, uniforms)
    ref, _ = voc.sample_loop(voc.conditioning(window), uniforms)
    assert got.shape == ref.shape == (1, 40)
    assert _maxerr(got, ref) < 1e-6  # identical levels (the sampled labels agree)


def test_vocoder_generation_from_artifacts(models, exported):
    """vocoder_gen.generate on the artifacts (ArtifactVocoder) gives the torch model's waveform."""
    from rtclone.kernels import cpu
    from rtclone.runners import ArtifactVocoder
    from rtclone.vocoder_gen import generate

    voc = models[2]
    backend = "cpu-native" if cpu.available() else "torch"
    mel = torch.randn(80, 12, generator=torch.Generator().manual_seed(6)) * 2.0  # (feat, T)
    ref = voc.generate(mel, seed=3, backend=backend, fade_out=0.0)
    got = generate(ArtifactVocoder(exported["onnx"][2]), mel, seed=3, backend=backend, fade_out=0.0)
    assert got.shape == ref.shape == (11 * 4,) and ref.std() > 0.05  # a real (non-silent) waveform
    assert np.abs(got - ref).max() < 1e-5


@pytest.mark.parametrize("fmt", FORMATS)
def test_exported_pipeline_reproduces_torch_mels(models, exported, fmt):
    """Same seed → synthesize/stream on the artifacts (ArtifactSynthesizer) give the torch model's mels."""
    from rtclone.runners import ArtifactSynthesizer
    from rtclone.synthesizer import stream

    syn, runner = models[1], exported[fmt][2]
    art = ArtifactSynthesizer(runner)
    spk = torch.nn.functional.normalize(torch.randn(256, generator=torch.Generator().manual_seed(5)), dim=0).numpy()
    opts = TacotronOptions(seed=11, max_decoder_steps=8, on_max_length="truncate", stop_threshold=None,
                           detect_attention_failure=False, postnet_chunk=6, postnet_context=6)
    (ref_mel, ref_attn, ref_stop), = synthesize(syn, ["A short test."], spk, opts)
    (mel, attn, stop), = synthesize(art, ["A short test."], spk, opts)
    assert stop == ref_stop == 7 and mel.shape == ref_mel.shape == (80, 24)
    assert _maxerr(mel, ref_mel) < TOL and _maxerr(attn, ref_attn) < TOL  # measured ~1e-7 after 8 steps + postnet
    chunks, ref_chunks = list(stream(art, "A short test.", spk, opts)), list(stream(syn, "A short test.", spk, opts))
    assert [c.shape for c in chunks] == [c.shape for c in ref_chunks] and len(chunks) > 1
    assert _maxerr(np.concatenate(chunks, 1), np.concatenate(ref_chunks, 1)) < TOL
    # another seed (other prenet masks) moves the mels by >10x the tolerance: the check has teeth
    (other, _, _), = synthesize(art, ["A short test."], spk, dataclasses.replace(opts, seed=12))
    assert _maxerr(other, ref_mel) > 10 * TOL


@pytest.mark.slow
def test_runner_needs_no_model_modules(exported):
    """A fresh interpreter serves the artifacts without importing any model module."""
    code = (
        "import sys, numpy as np\n"
        "from rtclone.runners import load_runner\n"
        f"r = load_runner({str(exported['onnx'][0])!r})\n"
        "e = r.embed_mels(np.ones((1, 20, 40), np.float32))\n"
        "c = r.vocoder_conditioning(np.zeros((1, 80, 5), np.float32))\n"
        "bad = [m for m in ('rtclone.encoder', 'rtclone.synthesizer', 'rtclone.tacotron_layers', 'rtclone.vocoder',"
        " 'rtclone.checkpoints') if m in sys.modules]\n"
        "print(e.shape, c.shape, bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "(1, 16) (1, 4, 88) []"


def test_prenet_masks_follow_dropout_rate():
    a, b = prenet_masks((64, 128), 0.5, torch.Generator().manual_seed(0))
    assert set(np.unique(a)) <= {0.0, 1.0} and abs(a.mean() - 0.5) < 0.03 and not np.array_equal(a, b)
    ones, _ = prenet_masks((4, 8), 0.0)
    assert np.all(ones == 1.0)


@pytest.mark.slow
def test_pretrained_encoder_parity_on_speech(tmp_path, speech):
    from rtclone.audio import preprocess_wav
    from rtclone.checkpoints import load_encoder
    from rtclone.encoder import utterance_partials

    enc = load_encoder()
    wav = preprocess_wav(speech("The quick brown fox jumps over the lazy dog."), 16000)
    mels, _ = utterance_partials(wav)  # (N, 160, 40)
    with torch.no_grad():
        ref = enc(torch.from_numpy(mels))
    for fmt in FORMATS:
        export_models(tmp_path / fmt, encoder=enc, format=fmt)
        runner = load_runner(tmp_path / fmt)
        assert _maxerr(runner.embed_mels(mels), ref) < 1e-5
    # the runner's utterance embedding is partials → mean → L2, as embed_utterance's
    mean = ref.mean(0)
    assert _maxerr(runner.embed_utterance(wav), mean / mean.norm()) < 1e-5


# ---- bad artifacts ---------------------------------------------------------------------------------
@pytest.fixture
def copy_of(exported, tmp_path):
    def make(fmt):
        d = tmp_path / fmt
        shutil.copytree(exported[fmt][0], d)
        return d
    return make


def _edit_manifest(d, fn):
    m = json.loads((d / MANIFEST).read_text())
    fn(m)
    (d / MANIFEST).write_text(json.dumps(m))


@pytest.mark.parametrize("fmt", FORMATS)
def test_missing_manifest_or_file(copy_of, fmt):
    d = copy_of(fmt)
    (d / [p for p in d.iterdir() if p.name.startswith("postnet")][0].name).unlink()
    with pytest.raises(ArtifactError, match=r"postnet\.(onnx|ts).*missing"):
        load_runner(d)
    (d / MANIFEST).unlink()
    with pytest.raises(ArtifactError, match="manifest.json"):
        load_runner(d)


@pytest.mark.parametrize("fmt", FORMATS)
def test_wrong_version_or_dims(copy_of, fmt):
    d = copy_of(fmt)
    _edit_manifest(d, lambda m: m.update(artifact_version=ARTIFACT_VERSION + 1))
    with pytest.raises(ArtifactError, match="manifest.json.*artifact version 2"):
        load_runner(d)
    _edit_manifest(d, lambda m: m.update(artifact_version=ARTIFACT_VERSION))
    _edit_manifest(d, lambda m: m["components"]["encoder"]["dims"].update(hidden=25))
    with pytest.raises(ArtifactError, match=r"encoder\.(onnx|ts): dims .* differ from the manifest"):
        load_runner(d)
    _edit_manifest(d, lambda m: m["components"]["encoder"]["dims"].update(hidden=24))
    with pytest.raises(ArtifactError, match=r"vocoder_cond\.(onnx|ts): dims .* expected vocoder dims"):
        load_runner(d, expect_dims={"vocoder": {**VOC_DIMS.__dict__, "rnn_dims": 512}})
    assert load_runner(d, expect_dims={"encoder": ENC_DIMS.__dict__}).r == 3  # the right dims load


def test_artifact_version_inside_file_shapes_and_corruption(copy_of):
    import onnx

    d = copy_of("onnx")
    path = d / "encoder.onnx"
    proto = onnx.load(str(path))
    meta = json.loads(proto.metadata_props[0].value)
    proto.metadata_props[0].value = json.dumps({**meta, "artifact_version": 0})
    onnx.save(proto, str(path))
    with pytest.raises(ArtifactError, match="encoder.onnx: SHA-256 differs"):
        load_runner(d)
    with pytest.raises(ArtifactError, match="encoder.onnx: artifact version 0, expected 1"):
        load_runner(d, verify_hashes=False)
    loop = copy_of("torchscript") / "vocoder_loop.npz"
    with np.load(loop) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["fc3.weight"] = arrays["fc3.weight"][:-1]  # one output class short of the dims
    with open(loop, "wb") as f:
        np.savez(f, **arrays)
    with pytest.raises(ArtifactError, match=r"vocoder_loop.npz: fc3.weight has shape \(63, 16\), dims say \(64, 16\)"):
        load_runner(loop.parent, verify_hashes=False)
    path.write_bytes(b"not an onnx file")
    with pytest.raises(ArtifactError, match="encoder.onnx: cannot load"):
        load_runner(d, verify_hashes=False)


def test_export_checkpoints_from_files(models, tmp_path):
    from rtclone.checkpoints import save_model
    from rtclone.export import export_checkpoints

    enc, syn, voc = models
    paths = {k: save_model(m, tmp_path / f"{k}.pt", k) for k, m in (("encoder", enc), ("synthesizer", syn), ("vocoder", voc))}
    manifest = export_checkpoints(tmp_path / "out", **paths, format="torchscript")
    runner = TorchScriptRunner(tmp_path / "out", expect_dims={"encoder": ENC_DIMS.__dict__, "vocoder": VOC_DIMS.__dict__,
                                                             "synthesizer": SynthesizerDims.tiny().__dict__})
    assert len(manifest["components"]) == 7 and runner.r == 3  # r travels in the checkpoint's decoder.r buffer
    x = torch.rand(2, 30, 40)
    assert _maxerr(runner.embed_mels(x.numpy()), enc(x)) < TOL


def test_export_refuses_bad_requests(models, tmp_path):
    from rtclone.errors import OptionsError
    from rtclone.synthesizer import quantize_decoder_int8

    enc, syn, _ = models
    with pytest.raises(OptionsError, match="format must be one of"):
        export_models(tmp_path, encoder=enc, format="tflite")
    with pytest.raises(OptionsError, match="nothing to export"):
        export_models(tmp_path, encoder=None)
    with pytest.raises(OptionsError, match="quantized"):
        export_models(tmp_path, encoder=None, synthesizer=quantize_decoder_int8(syn), format="torchscript")
    assert not (tmp_path / MANIFEST).exists()


def test_backend_mismatch_names_manifest(exported):
    with pytest.raises(ArtifactError, match="manifest.json: a onnx export, not torchscript"):
        TorchScriptRunner(exported["onnx"][0])


@pytest.mark.parametrize("fmt", FORMATS)
def test_exported_inverter_drives_griffin_lim_like_the_module(models, tmp_path, fmt):
    """A set with a synthesizer and a mel inverter (no WaveRNN): the cloner runs Griffin-Lim on the exported
    inverter, whose magnitudes match the module's, and an eval report names it by the graph's hash."""
    from rtclone.checkpoints import save_model
    from rtclone.export import export_checkpoints
    from rtclone.mel_inverter import InverterDims, MelInverter
    from rtclone.pipeline import Cloner
    from rtclone.runners import ArtifactInverter

    enc, syn, _ = models
    torch.manual_seed(3)
    inv = MelInverter(InverterDims(hidden=24, layers=2, context=2)).eval()
    torch.nn.init.normal_(inv.out.weight, std=0.1)
    paths = {k: save_model(m, tmp_path / f"{k}.pt", k) for k, m in (("encoder", enc), ("synthesizer", syn), ("inverter", inv))}
    manifest = export_checkpoints(tmp_path / "out", **paths, format=fmt)
    assert manifest["components"]["inverter"]["lookahead"] == 2 and "vocoder_cond" not in manifest["components"]
    cloner = Cloner.from_dir(tmp_path / "out")
    art = cloner.vocoder.inverter
    assert isinstance(art, ArtifactInverter) and art.dims == inv.dims and art.lookahead == 2
    assert art.artifact_sha256 == manifest["components"]["inverter"]["sha256"]
    mel = torch.rand(1, 80, 45) * 6 - 4  # 45 frames: not the export example's size
    assert _maxerr(art(mel).numpy(), inv(mel)) < TOL
    whole = art.invert(mel[0].numpy())
    assert whole.shape == (401, 45) and np.allclose(whole, inv.invert(mel[0].numpy()), rtol=1e-3)
    with pytest.raises(ArtifactError):  # a set without one: a clear error, not a crash
        ArtifactInverter(_without(tmp_path, "inverter", fmt))


def _without(tmp_path, component: str, fmt: str):
    """A runner over an export of the same tiny encoder only (no ``component``)."""
    from rtclone.export import export_models

    d = tmp_path / f"only-encoder-{fmt}"
    export_models(d, encoder=SpeakerEncoder(ENC_DIMS).eval(), format=fmt)
    runner = load_runner(d)
    assert not runner.has(component)
    return runner


def test_exported_onnx_sessions_run_one_thread_unless_told(exported):
    """Cloner.from_artifacts gives each onnxruntime session 1 intra-op thread (measured faster for these small per-step
    graphs, alone and under concurrent streams); onnx_threads=None leaves onnxruntime's default; TorchScript loads as before."""
    from rtclone.pipeline import Cloner

    def intra(cloner):
        sessions = {n: m for n, m in cloner.encoder._models.items() if hasattr(m, "get_session_options")}  # not the npz loop
        return {name: sess.get_session_options().intra_op_num_threads for name, sess in sessions.items()}

    d = exported["onnx"][0]
    one, default = intra(Cloner.from_artifacts(d)), intra(Cloner.from_artifacts(d, onnx_threads=None))
    assert set(one) >= {"encoder", "text_encoder", "decoder_step"} and set(one.values()) == {1}
    assert set(default.values()) == {0}  # 0: onnxruntime picks (one per core)
    ts = Cloner.from_artifacts(exported["torchscript"][0], onnx_threads=None)
    assert ts.encoder.backend == "torchscript"
