"""The built-in multi-voice English corpus (``rtclone corpus build``), made offline.

Voices come from Debian's flite voices, festival voices and espeak-ng English variants; each
base voice also gets pitch / tempo / timbre variants made with sox, so the inventory has well
over 40 distinct voices (:func:`list_voices`). Every voice carries its engine and a quality
flag: pocketsphinx recognises flite's rms and slt with ~0-13 % WER but espeak-ng with
~60-100 %, so the inventory is ordered by quality and espeak-ng voices come last.

Layout (LibriSpeech-like)::

    root/manifest.json
    root/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac        16 kHz mono, 16 bit
    root/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt         "<utt-id> <sentence>" lines

``<speaker>`` is a number (100 + the voice's index in :func:`list_voices`); chapter 1 holds
the voice's training sentences, chapter 2 the held-out sentences (ground truth for
evaluation), chapter 3 (training voices only) sentences of the extra list, which is never held
out: 292 core sentences read by every voice teach a Tacotron too few spellings to read new text,
so the extra list adds thousands more, each read by one or two voices. Chapter 4 (corpus version 3,
``CorpusOptions(extra2_per_voice=n)``) does the same with a second list of new sentences; a plan
without it is exactly version 2's, so a v2 corpus grows into v3 by building the missing chapter-4
files only (copy or hard-link it to a new root first: a root keeps the options it was built with).
Chapter 5 (corpus version 4, ``extra3_per_voice``) adds a third list the same way.
Utterances of held-out voices and of held-out sentences are evaluation-only:
``manifest["utterances"][i]["split"]`` is "train" or "eval" (see :func:`list_utterances`).
The build is deterministic from the seed, resumable (finished files are skipped, every file is
written to a temporary name and renamed) and the transcripts keep the sentence as written.

A *test set* (``rtclone corpus test-set SRC DST``, :func:`build_test_set`) is a second corpus derived
from a built one: the same voices (the high-quality ones by default) read a list of sentences no corpus
trains on (rtclone/data/sentences-test.txt) as its held-out chapter 6, and each voice's chapter-1
utterances are hard-linked from the source as the references. ``rtclone eval clone DST`` then scores a
model on sentences that played no part in choosing it (the source's 20 held-out sentences have picked
checkpoints and options for many sessions).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.resources
import json
import os
import random
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from rtclone.errors import BackendUnavailableError, OptionsError, SynthesisError

__all__ = ["VoiceSpec", "CorpusOptions", "CORPUS_VERSION", "load_sentences", "load_extra_sentences", "load_extra2_sentences",
           "load_extra3_sentences",
           "list_voices",
           "engine_available", "plan_corpus", "build_corpus", "build_test_set", "load_test_sentences", "parse_sentences",
           "corpus_summary",
           "list_utterances"]

CORPUS_VERSION = 2  # 2: chapter 3, the extra training sentences; 3: chapter 4 too; 4: chapter 5 too
TRAIN_CHAPTER, HELDOUT_CHAPTER, EXTRA_CHAPTER, EXTRA2_CHAPTER, EXTRA3_CHAPTER = 1, 2, 3, 4, 5
# chapter -> (CorpusOptions field, sentence list, tag of its shuffle's seed, corpus version of a plan reading it)
_EXTRA_LISTS = {EXTRA_CHAPTER: ("extra_per_voice", "sentences-extra.txt", "extra", 2),
                EXTRA2_CHAPTER: ("extra2_per_voice", "sentences-extra2.txt", "extra2", 3),
                EXTRA3_CHAPTER: ("extra3_per_voice", "sentences-extra3.txt", "extra3", 4)}
TEST_CHAPTER, TEST_SENTENCE_BASE = 6, 1_000_000  # a test set's chapter, and its sentence ids' offset
_BATCH = 10  # utterances per engine call (festival pays its start-up once per batch)
_FESTIVAL_VOICE_DIRS = Path("/usr/share/festival/voices")
# Debian packages that provide each engine (for error messages and the CI install line)
ENGINE_PACKAGES = {"flite": "flite", "espeak-ng": "espeak-ng",
                   "festival": "festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts"}


@dataclass(frozen=True)
class VoiceSpec:
    """One corpus voice: a TTS engine voice plus sox post-processing."""

    name: str                 # unique, e.g. "flite-slt" or "flite-slt-v2"
    engine: str               # "flite" | "festival" | "espeak-ng"
    voice: str                # the engine's voice name ("slt", "kal_diphone", "en-us+m3")
    quality: str              # "high" | "medium" | "low": how well listeners and ASR follow it
    pitch_cents: int = 0      # sox pitch shift (formants move with it: a new vocal tract)
    tempo: float = 1.0        # sox tempo factor (speaking rate, pitch kept)
    bass_db: float = 0.0      # sox bass shelf gain at 100 Hz
    treble_db: float = 0.0    # sox treble shelf gain at 3 kHz
    engine_args: tuple[str, ...] = ()  # extra engine flags (espeak-ng pitch/speed, flite f0)

    def params(self) -> dict:
        """The synthesis parameters as a JSON-able dict (for the manifest)."""
        d = dataclasses.asdict(self)
        d["engine_args"] = list(self.engine_args)
        return d


# (engine, voice, quality, short name, female?, f0 in Hz if the engine can move it (flite's
# int_f0_target_mean) else None). Quality from pocketsphinx WER on 8 of our sentences:
# kal16 6 %, rms 9 %, sltHts 16 %, slt 23 % (high); awb 19 %, ked 16 %, kalDiphone 19 %
# (medium); kal 41 % (8 kHz diphones: nothing above 4 kHz); espeak-ng 60-100 % (low).
_BASES = [
    ("flite", "slt", "high", "slt", True, 176),
    ("flite", "rms", "high", "rms", False, None),
    ("flite", "kal16", "high", "kal16", False, 95),
    ("festival", "cmu_us_slt_arctic_hts", "high", "sltHts", True, None),
    ("flite", "awb", "medium", "awb", False, 133),
    ("festival", "ked_diphone", "medium", "ked", False, None),
    ("festival", "kal_diphone", "medium", "kalDiphone", False, None),
    ("flite", "kal", "low", "kal", False, None),
]
# sox variants of each base: (pitch cents for a male base, for a female base, tempo, bass dB,
# treble dB, engine f0 factor). Shifts go mostly toward the middle (male up, female down):
# shifting a voice further out (slt +120 cents, rms -230) more than triples pocketsphinx's WER,
# shifting it inward (slt -280, rms +280) keeps it near the base's. sox's pitch moves the
# formants too, so a shift is a new vocal tract; the engine f0 factor moves only the pitch.
_RECIPES = [(150, -150, 1.0, 0.0, 0.0, 1.0), (280, -280, 1.0, 0.0, 0.0, 1.0),
            (-90, -90, 0.92, 5.0, -2.0, 0.85), (200, -200, 1.08, -2.0, 5.0, 1.0),
            (60, -60, 0.96, 2.0, 2.0, 1.2)]
_ESPEAK = [("en-us+m3", 45, 150), ("en-gb-x-rp+f2", 60, 145), ("en-us+m1", 40, 155),
           ("en+f4", 65, 150), ("en-gb-scotland+m7", 50, 150), ("en-us-nyc+m5", 48, 150),
           ("en-029+m2", 42, 145), ("en-gb-x-gbclan+f3", 58, 150), ("en-us+f5", 62, 155),
           ("en-gb-x-rp+m4", 38, 145), ("en-gb+m6", 46, 150), ("en-us+f1", 70, 150)]
_QUALITY_RANK = {"high": 0, "medium": 1, "low": 2}


def list_voices(seed: int = 0) -> list[VoiceSpec]:
    """The full voice inventory, best quality first (within a quality: bases, then variants).

    The seed jitters the variants' pitch, tempo and EQ a little (deterministically); names and
    order do not depend on it. ``CorpusOptions(n_voices=n)`` takes the first n.
    """
    rng = random.Random(f"rtclone-voices-{seed}")
    voices = [VoiceSpec(f"{e}-{short}", e, v, q) for e, v, q, short, _, _ in _BASES]
    for k, (male_cents, female_cents, tempo, bass, treble, f0_factor) in enumerate(_RECIPES):
        for engine, voice, quality, short, female, f0 in _BASES:
            jitter = rng.randrange(-4, 5) * 10
            args = ()
            if f0 is not None and f0_factor != 1.0:
                args = ("--setf", f"int_f0_target_mean={round(f0 * f0_factor)}")
            voices.append(VoiceSpec(
                f"{engine}-{short}-v{k + 1}", engine, voice, quality,
                pitch_cents=(female_cents if female else male_cents) + jitter,
                tempo=round(tempo + rng.randrange(-2, 3) / 100, 2),
                bass_db=bass + rng.randrange(-1, 2), treble_db=treble + rng.randrange(-1, 2),
                engine_args=args))
    for voice, pitch, speed in _ESPEAK:
        voices.append(VoiceSpec(f"espeak-{voice.replace('+', '-')}", "espeak-ng", voice, "low",
                                engine_args=("-p", str(pitch + rng.randrange(-3, 4)),
                                             "-s", str(speed))))
    return sorted(voices, key=lambda v: _QUALITY_RANK[v.quality])  # stable: keeps the order


def engine_available(engine: str, voice: str | None = None) -> bool:
    """Whether ``engine`` (and, for festival, the given voice) is installed, plus sox."""
    tool = {"flite": "flite", "festival": "festival", "espeak-ng": "espeak-ng"}.get(engine)
    if tool is None or shutil.which(tool) is None or shutil.which("sox") is None:
        return False
    if engine == "festival" and voice is not None:
        return any(_FESTIVAL_VOICE_DIRS.glob(f"*/{voice}"))
    return True


def parse_sentences(text: str) -> list[str]:
    """A sentence list's lines, stripped, without blank lines and "#" comments."""
    return [s.strip() for s in text.splitlines() if s.strip() and not s.startswith("#")]


def _read_list(name: str) -> list[str]:
    return parse_sentences((importlib.resources.files("rtclone") / "data" / name).read_text("utf-8"))


def load_sentences() -> list[str]:
    """The core sentence list (rtclone/data/sentences.txt; written for this project): every voice
    reads its training part, and the held-out sentences are drawn from it."""
    return _read_list("sentences.txt")


def load_extra_sentences() -> list[str]:
    """The extra training-only sentences (rtclone/data/sentences-extra.txt; written for this project)."""
    return _read_list(_EXTRA_LISTS[EXTRA_CHAPTER][1])


def load_extra2_sentences() -> list[str]:
    """The second extra list (rtclone/data/sentences-extra2.txt; written for this project): chapter 4."""
    return _read_list(_EXTRA_LISTS[EXTRA2_CHAPTER][1])


def load_extra3_sentences() -> list[str]:
    """The third extra list (rtclone/data/sentences-extra3.txt; written for this project): chapter 5."""
    return _read_list(_EXTRA_LISTS[EXTRA3_CHAPTER][1])


def load_test_sentences() -> list[str]:
    """The test list (rtclone/data/sentences-test.txt; written for this project): in no corpus's
    training or held-out chapters; read only by test sets (:func:`build_test_set`)."""
    return _read_list("sentences-test.txt")


@dataclass(frozen=True)
class CorpusOptions:
    """What to build. Validated on construction."""

    seed: int = 0                    # drives variant jitter, held-out choice and sentence picks
    n_voices: int = 40               # the first n voices of list_voices (ignored if `voices`)
    voices: tuple[str, ...] = ()     # explicit voice names instead of the first n_voices
    utterances_per_voice: int = 120  # training-sentence utterances per voice (chapter 1)
    extra_per_voice: int = 150       # extra-sentence utterances per training voice (chapter 3)
    extra2_per_voice: int = 0        # second-extra-list utterances per training voice (chapter 4; corpus v3)
    extra3_per_voice: int = 0        # third-extra-list utterances per training voice (chapter 5; corpus v4)
    heldout_voices: int = 4          # voices kept for evaluation only
    heldout_sentences: int = 20      # sentences kept for evaluation (chapter 2, every voice)
    sample_rate: int = 16000         # output rate (16 kHz inside the engine)
    jobs: int = 1                    # parallel synthesis processes

    def __post_init__(self) -> None:
        n_sentences = len(load_sentences())
        selected = len(self.voices) or self.n_voices
        checks = [
            (self.n_voices >= 1, "n_voices must be >= 1"),
            (self.utterances_per_voice >= 1, "utterances_per_voice must be >= 1"),
            (self.extra_per_voice >= 0, "extra_per_voice must be >= 0"),
            (self.extra2_per_voice >= 0, "extra2_per_voice must be >= 0"),
            (self.extra3_per_voice >= 0, "extra3_per_voice must be >= 0"),
            (0 <= self.heldout_voices < selected,
             f"heldout_voices must be in [0, {selected}) for {selected} voices"),
            (0 <= self.heldout_sentences < n_sentences,
             f"heldout_sentences must be in [0, {n_sentences})"),
            (8000 <= self.sample_rate <= 48000, "sample_rate must be 8-48 kHz"),
            (self.jobs >= 1, "jobs must be >= 1"),
            (len(set(self.voices)) == len(self.voices), "voices has duplicates"),
        ]
        for ok, message in checks:
            if not ok:
                raise OptionsError(message)
        inventory = list_voices(self.seed)
        if self.voices:
            unknown = sorted(set(self.voices) - {v.name for v in inventory})
            if unknown:
                raise OptionsError(f"unknown corpus voices: {', '.join(unknown)}")
        elif self.n_voices > len(inventory):
            raise OptionsError(f"n_voices must be <= {len(inventory)} (the inventory size)")


# ---- synthesis ----------------------------------------------------------------------------------
def _scheme_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _engine_batch(spec: VoiceSpec, texts: list[str], tmp: Path) -> list[Path]:
    """Synthesise ``texts`` with the engine into raw wavs under ``tmp`` (one festival process
    for the whole batch: its start-up costs more than a sentence)."""
    raws = [tmp / f"raw{i}.wav" for i in range(len(texts))]
    if spec.engine == "festival":
        script = tmp / "batch.scm"
        script.write_text(f"(voice_{spec.voice})\n" + "".join(
            f"(utt.save.wave (utt.synth (Utterance Text {_scheme_string(t)})) "
            f"{_scheme_string(str(r))} 'riff)\n" for t, r in zip(texts, raws)), encoding="utf-8")
        _run(["festival", "-b", str(script)], f"festival ({spec.name})")
    else:
        for i, (text, raw) in enumerate(zip(texts, raws)):
            text_file = tmp / f"text{i}.txt"
            text_file.write_text(text + "\n", encoding="utf-8")
            _run(_engine_command(spec, text_file, raw), f"{spec.engine} ({spec.name})")
    missing = [str(r) for r in raws if not r.exists()]
    if missing:
        raise SynthesisError(f"{spec.engine} ({spec.name}) wrote no audio for {len(missing)} texts")
    return raws


def _engine_command(spec: VoiceSpec, text_file: Path, out_wav: Path) -> list[str]:
    if spec.engine == "flite":
        return ["flite", "-voice", spec.voice, *spec.engine_args, "-f", str(text_file),
                "-o", str(out_wav)]
    if spec.engine == "espeak-ng":
        return ["espeak-ng", "-v", spec.voice, *spec.engine_args, "-f", str(text_file),
                "-w", str(out_wav)]
    raise OptionsError(f"unknown engine {spec.engine!r}")


def _sox_command(spec: VoiceSpec, in_wav: Path, out_file: Path, sample_rate: int) -> list[str]:
    # -R: repeatable, -D: no dither, so the same input gives the same bytes
    cmd = ["sox", "-R", "-D", "-q", str(in_wav), "-t", "flac", "-b", "16", "-c", "1",
           str(out_file), "remix", "-"]
    if spec.pitch_cents:
        cmd += ["pitch", str(spec.pitch_cents)]
    if spec.tempo != 1.0:
        cmd += ["tempo", "-s", str(spec.tempo)]
    if spec.bass_db:
        cmd += ["bass", str(spec.bass_db), "100"]
    if spec.treble_db:
        cmd += ["treble", str(spec.treble_db), "3000"]
    return cmd + ["rate", "-v", str(sample_rate), "gain", "-n", "-3"]


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SynthesisError(f"{what} failed ({proc.returncode}): {proc.stderr.strip()[:300]}")


def _render(spec: VoiceSpec, items: list[tuple[str, Path]], sample_rate: int) -> None:
    """Synthesise each (text, out) pair with ``spec`` into ``out`` (flac); each file atomically."""
    with tempfile.TemporaryDirectory(prefix="rtclone-corpus-") as tmp:
        raws = _engine_batch(spec, [text for text, _ in items], Path(tmp))
        for raw, (_, out) in zip(raws, items):
            out.parent.mkdir(parents=True, exist_ok=True)
            part = out.with_name(out.name + ".part")
            _run(_sox_command(spec, raw, part, sample_rate), f"sox ({spec.name})")
            os.replace(part, out)


def _write_if_changed(path: Path, content: str) -> bool:
    if path.exists() and path.read_text(encoding="utf-8") == content:
        return False
    part = path.with_name(path.name + ".part")
    part.write_text(content, encoding="utf-8")
    os.replace(part, path)
    return True


# ---- plan and build -----------------------------------------------------------------------------
def plan_corpus(options: CorpusOptions) -> dict:
    """The manifest a build will write (voices, sentence split, every utterance), nothing run."""
    inventory = list_voices(options.seed)
    speaker_of = {v.name: 100 + i for i, v in enumerate(inventory)}
    chosen = ([v for v in inventory if v.name in set(options.voices)] if options.voices
              else inventory[:options.n_voices])
    rng = random.Random(f"rtclone-corpus-{options.seed}")
    sentences = load_sentences()
    heldout_sent = sorted(rng.sample(range(len(sentences)), options.heldout_sentences))
    train_sent = [i for i in range(len(sentences)) if i not in set(heldout_sent)]
    # extra sentences get ids after the core ones; training voice j reads the j-th run of n in one
    # shuffled cycle of a list, so each is read by as few voices as possible. The lists follow one
    # another (ids after the previous list's); a list read by no voice adds nothing, so a plan without
    # the later lists is exactly the earlier version's
    extras = []  # (chapter, shuffled sentence ids, utterances per training voice)
    for chapter, (field, name, tag, _) in _EXTRA_LISTS.items():
        n = getattr(options, field)
        text = _read_list(name) if n else []
        ids = list(range(len(sentences), len(sentences) + len(text)))
        random.Random(f"rtclone-corpus-{options.seed}-{tag}").shuffle(ids)
        extras.append((chapter, ids, min(n, len(ids))))
        sentences = sentences + text
    # hold out sox variants first, so every base engine voice stays in training
    variants = [v.name for v in chosen if v.pitch_cents or v.tempo != 1.0]
    others = [v.name for v in chosen if v.name not in set(variants)]
    k = options.heldout_voices
    heldout_names = rng.sample(variants, min(k, len(variants)))
    heldout_names += rng.sample(others, k - len(heldout_names))
    voices, utterances, n_train_voices = [], [], 0
    for spec in chosen:
        speaker = str(speaker_of[spec.name])
        voice_split = "eval" if spec.name in heldout_names else "train"
        voices.append({"speaker": speaker, "name": spec.name, "engine": spec.engine,
                       "quality": spec.quality, "split": voice_split, "params": spec.params()})
        vrng = random.Random(f"rtclone-corpus-{options.seed}-{spec.name}")
        picks = vrng.sample(train_sent, min(options.utterances_per_voice, len(train_sent)))
        chapters = [(TRAIN_CHAPTER, picks), (HELDOUT_CHAPTER, heldout_sent)]
        if voice_split == "train":
            for chapter, ids, n in extras:
                if n:
                    chapters.append((chapter, [ids[(n_train_voices * n + i) % len(ids)] for i in range(n)]))
            n_train_voices += 1
        for chapter, sentence_ids in chapters:
            for n, sid in enumerate(sentence_ids):
                uid = f"{speaker}-{chapter}-{n:04d}"
                utterances.append({
                    "id": uid, "path": f"{speaker}/{chapter}/{uid}.flac", "speaker": speaker,
                    "sentence": sid, "text": sentences[sid],
                    "split": "train" if voice_split == "train" and chapter != HELDOUT_CHAPTER
                    else "eval"})
    digest = hashlib.sha256("\n".join(sentences).encode()).hexdigest()
    # jobs may change between resumed runs; the later lists' counts are left out at 0 so older manifests match
    later = {field for chapter, (field, *_) in _EXTRA_LISTS.items() if chapter != EXTRA_CHAPTER}
    opts = {k: v for k, v in dataclasses.asdict(options).items() if k != "jobs" and (k not in later or v)}
    version = max([CORPUS_VERSION] + [_EXTRA_LISTS[chapter][3] for chapter, _, n in extras if n])
    return {"format": "rtclone-corpus", "version": version, "seed": options.seed,
            "sample_rate": options.sample_rate, "options": opts,
            "sentences_sha256": digest,
            "sentences": {"train": train_sent + [i for _, ids, _ in extras for i in sorted(ids)],
                          "heldout": heldout_sent},
            "voices": voices, "utterances": utterances}


def build_corpus(root: Path, options: CorpusOptions, progress: bool = False) -> dict:
    """Build (or resume building) the corpus under ``root``; returns the manifest.

    Raises ``BackendUnavailableError`` when a chosen voice's engine or sox is missing and
    ``OptionsError`` when ``root`` already holds a corpus made with other options.
    """
    root = Path(root)
    manifest = json.loads(json.dumps(plan_corpus(options)))  # tuples → lists, as read back from disk
    _start_manifest(root, manifest)
    specs = {v.name: v for v in list_voices(options.seed)}
    _render_pending(root, manifest, specs, options.sample_rate, options.jobs, progress)
    manifest["complete"] = True
    _write_if_changed(root / "manifest.json", json.dumps(manifest, indent=1))
    return manifest


def _render_pending(root: Path, manifest: dict, specs: dict[str, VoiceSpec], sample_rate: int, jobs: int,
                    progress: bool) -> None:
    """Render every utterance of ``manifest`` whose file is missing, a chapter at a time, and write
    each chapter's transcript file."""
    by_chapter: dict[str, list[dict]] = {}
    for utt in manifest["utterances"]:
        by_chapter.setdefault(utt["path"].rsplit("/", 1)[0], []).append(utt)
    name_of = {v["speaker"]: v["name"] for v in manifest["voices"]}
    todo = [u for u in manifest["utterances"] if not (root / u["path"]).exists()]
    bar = None
    if progress and todo:
        from tqdm import tqdm
        bar = tqdm(total=len(todo), unit="utt", desc="corpus")

    def render(batch: list[dict]) -> int:
        spec = specs[name_of[batch[0]["speaker"]]]
        _render(spec, [(u["text"], root / u["path"]) for u in batch], sample_rate)
        return len(batch)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for chapter, utts in by_chapter.items():
            pending = [u for u in utts if not (root / u["path"]).exists()]
            batches = [pending[i:i + _BATCH] for i in range(0, len(pending), _BATCH)]
            for done in pool.map(render, batches):
                if bar is not None:
                    bar.update(done)
            speaker, number = chapter.split("/")
            _write_if_changed(root / chapter / f"{speaker}-{number}.trans.txt",
                              "".join(f"{u['id']} {u['text']}\n" for u in utts))
    if bar is not None:
        bar.close()


def _start_manifest(root: Path, manifest: dict) -> None:
    """Write ``manifest`` (incomplete) to a new root, or check that ``root`` was started with it."""
    for voice in manifest["voices"]:
        if not engine_available(voice["engine"], voice["params"]["voice"]):
            raise BackendUnavailableError(
                f"voice {voice['name']} needs {voice['engine']} and sox: "
                f"apt-get install sox {ENGINE_PACKAGES[voice['engine']]}")
    manifest_path = root / "manifest.json"
    if manifest_path.exists():
        old = json.loads(manifest_path.read_text(encoding="utf-8"))
        if {k: v for k, v in old.items() if k != "complete"} != manifest:
            raise OptionsError(f"{root} holds a corpus built with other options or sentences; "
                               "use an empty directory")
    else:
        root.mkdir(parents=True, exist_ok=True)
        _write_if_changed(manifest_path, json.dumps({**manifest, "complete": False}, indent=1))


def build_test_set(source: Path, root: Path, *, voices: tuple[str, ...] = (), sentences: list[str] | None = None,
                   jobs: int = 1, progress: bool = False) -> dict:
    """Build (or resume) a test set under ``root`` from the built corpus ``source``; returns its manifest.

    ``voices``: source voice names (default: every high-quality one). ``sentences``: the texts to read
    (default :func:`load_test_sentences`); any that the source or a built-in training list holds is refused
    (it would not be a test).
    The manifest keeps the source's voice entries, speaker ids and splits, and its training sentence ids
    for the references; the test sentences get ids from ``TEST_SENTENCE_BASE`` and are the held-out ones.
    """
    source, root = Path(source), Path(root)
    try:
        src = json.loads((source / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise OptionsError(f"{source} is not a built corpus: {exc}") from exc
    if not src.get("complete"):
        raise OptionsError(f"the corpus in {source} is not complete: finish `rtclone corpus build` first")
    if jobs < 1:
        raise OptionsError(f"jobs must be at least 1, got {jobs}")
    texts = list(load_test_sentences() if sentences is None else sentences)
    if not texts or len(set(texts)) != len(texts):
        raise OptionsError("a test set needs at least one sentence, each once")
    # the source's sentences and every built-in list a corpus (v2-v4, so the default models) trains on
    known = {u["text"].strip().lower() for u in src["utterances"]}
    known |= {t.lower() for t in load_sentences() + [t for _, name, _, _ in _EXTRA_LISTS.values() for t in _read_list(name)]}
    clash = [t for t in texts if t.strip().lower() in known]
    if clash:
        raise OptionsError(f"{len(clash)} test sentence(s) are in the source corpus or a training list already, e.g. {clash[0]!r}")
    unknown = sorted(set(voices) - {v["name"] for v in src["voices"]})
    if unknown:
        raise OptionsError(f"voices not in {source}: {', '.join(unknown)}")
    chosen = [v for v in src["voices"] if v["name"] in set(voices)] if voices else [v for v in src["voices"] if v["quality"] == "high"]
    if not chosen:
        raise OptionsError("no voice chosen for the test set")
    speakers = {v["speaker"] for v in chosen}
    refs = [u for u in src["utterances"] if u["speaker"] in speakers and u["path"].split("/")[1] == str(TRAIN_CHAPTER)]
    test = [{"id": f"{v['speaker']}-{TEST_CHAPTER}-{n:04d}", "path": f"{v['speaker']}/{TEST_CHAPTER}/{v['speaker']}-{TEST_CHAPTER}-{n:04d}.flac",
             "speaker": v["speaker"], "sentence": TEST_SENTENCE_BASE + n, "text": text, "split": "eval"}
            for v in chosen for n, text in enumerate(texts)]  # fmt: skip
    manifest = {"format": "rtclone-test-set", "version": src["version"], "seed": src["seed"], "sample_rate": src["sample_rate"],
                "source": {"path": str(source.resolve()), "sentences_sha256": src["sentences_sha256"]},
                "sentences_sha256": hashlib.sha256("\n".join(texts).encode()).hexdigest(),
                "sentences": {"train": sorted({u["sentence"] for u in refs}), "heldout": [TEST_SENTENCE_BASE + n for n in range(len(texts))]},
                "voices": chosen, "utterances": refs + test}  # fmt: skip
    _start_manifest(root, manifest)
    for u in refs:  # the references, hard-linked (copied across file systems)
        dst, srcf = root / u["path"], source / u["path"]
        if not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(srcf, dst)
            except OSError:
                shutil.copyfile(srcf, dst)
    specs = {v["name"]: VoiceSpec(**{**v["params"], "engine_args": tuple(v["params"]["engine_args"])}) for v in chosen}
    _render_pending(root, manifest, specs, src["sample_rate"], jobs, progress)
    manifest["complete"] = True
    _write_if_changed(root / "manifest.json", json.dumps(manifest, indent=1))
    return manifest


def corpus_summary(manifest: dict) -> dict:
    """Counts for printing (``rtclone corpus build / test-set --json``): voices, utterances, sentences.

    A corpus counts its training utterances; a test set (whose other utterances are the source's reference
    recordings, not training material) counts its test and reference utterances instead.
    """
    voices, utts = manifest["voices"], manifest["utterances"]
    out = {"version": manifest["version"], "seed": manifest["seed"],
           "complete": manifest.get("complete", False),
           "voices": len(voices), "heldout_voices": sum(v["split"] == "eval" for v in voices),
           "engines": sorted({v["engine"] for v in voices}), "utterances": len(utts)}
    if manifest.get("format") == "rtclone-test-set":
        test = sum(u["sentence"] >= TEST_SENTENCE_BASE for u in utts)
        return {**out, "test_utterances": test, "reference_utterances": len(utts) - test,
                "test_sentences": len(manifest["sentences"]["heldout"])}
    return {**out, "train_utterances": sum(u["split"] == "train" for u in utts),
            "train_sentences": len(manifest["sentences"]["train"]),
            "heldout_sentences": len(manifest["sentences"]["heldout"])}


def list_utterances(root: Path, split: str | None = None) -> list[dict]:
    """Utterances of a built corpus (dicts with id, path (absolute), speaker, text, split).

    ``split="train"`` gives only training material (no held-out voice or sentence),
    ``split="eval"`` only evaluation material, ``None`` everything.
    """
    root = Path(root)
    manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    if split not in (None, "train", "eval"):
        raise OptionsError(f"split must be 'train', 'eval' or None, got {split!r}")
    return [{**u, "path": str(root / u["path"])} for u in manifest["utterances"]
            if split is None or u["split"] == split]
