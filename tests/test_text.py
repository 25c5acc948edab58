"""Text front-end: cleaners, number speller (checked against inflect), ids, ARPAbet, chunking."""

from __future__ import annotations

import random
import string

import numpy as np
import pytest

from rtclone.errors import OptionsError, TextError
from rtclone.numbers import cardinal, ordinal, year
from rtclone.text import (ARPABET, EOS, PAD, SYMBOLS, clean_text, ids_to_text, split_sentences,
                          symbol_table, text_to_ids, to_arpabet)


def test_symbol_table_is_rtvc_order():
    expected = ["_", "~"] + list(string.ascii_uppercase) + list(string.ascii_lowercase) \
        + list("!'\"(),-.:;? ")
    assert SYMBOLS == expected and len(SYMBOLS) == 66
    assert (PAD, EOS) == ("_", "~")
    extended = symbol_table(arpabet=True)
    assert extended[:66] == expected and len(extended) == 66 + 39 == 105
    assert extended[66:] == ["@" + p for p in ARPABET] and len(set(extended)) == 105


@pytest.mark.parametrize("raw, cleaned", [
    ("$3.50", "three dollars, fifty cents"),
    ("$1.01", "one dollar, one cent"),
    ("$0.50", "fifty cents"),
    ("$3 million", "three million dollars"),
    ("£5", "five pounds"),
    ("1st", "first"),
    ("the 22nd and 103rd", "the twenty-second and one hundred third"),
    ("Dr. Smith", "doctor smith"),
    ("in 2026", "in twenty twenty-six"),
    ("in 1905 and 2000 and 2007", "in nineteen oh five and two thousand and two thousand seven"),
    ("é ñ ß", "e n ss"),
    ("Привет, мир!", "privet, mir!"),
    ("Hi 😀 there 🎉", "hi there"),
    ("3.14", "three point one four"),
    ("1,000,000", "one million"),
    ("1,234", "one thousand two hundred thirty-four"),
    ("Mrs. Jones vs. Mr. Brown", "missus jones versus mister brown"),
    ("Main St. and St. Louis", "main street and saint louis"),
    ("50% of -5", "fifty percent of minus five"),
    ("at 3:30, e.g. now", "at three thirty, for example now"),
    ("  Tabs\tand\n\nNEWLINES  ", "tabs and newlines"),
    ("rock/roll & jazz", "rock roll and jazz"),
    ("an mp3 of COVID19 in 3D", "an mp three of covid nineteen in three d"),
])
def test_clean_text(raw, cleaned):
    assert clean_text(raw) == cleaned


@pytest.mark.parametrize("bad", ["", "   ", "\n\t ", "😀🎉", "...", "?!", "#*"])
def test_unspeakable_text_is_a_typed_error(bad):
    with pytest.raises(TextError):
        clean_text(bad)
    with pytest.raises(TextError):
        text_to_ids(bad)
    with pytest.raises(TextError):
        text_to_ids(bad, clean=False)
    if not bad.strip():
        with pytest.raises(TextError):
            split_sentences(bad)


def test_cleaned_text_only_uses_table_symbols():
    rng = random.Random(0)
    alphabet = string.printable + "éñßüøæœ—–“”‘’…€£¥©®™°±×÷Привет你好😀"
    for _ in range(200):
        raw = "a" + "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 40)))
        out = clean_text(raw)
        assert set(out) <= set(SYMBOLS[2:]), raw
        assert out == out.strip() and "  " not in out and out == out.lower()
        assert clean_text(out) == out  # idempotent


def test_numbers_match_inflect():
    inflect = pytest.importorskip("inflect")
    engine = inflect.engine()
    rng = np.random.default_rng(0)
    values = [0, 7, 13, 20, 40, 99, 100, 101, 110, 1000, 1001, 10**6, 10**9 + 1]
    values += [int(v) for v in rng.integers(0, 10**12, 100)] + list(range(0, 130))
    for n in values:
        ref = engine.number_to_words(n, andword="", comma="")
        assert cardinal(n) == ref, n
        assert ordinal(n) == engine.ordinal(ref), n


def test_year_reading():
    assert [year(y) for y in (1066, 1776, 1900, 1905, 1999, 2000, 2009, 2010, 2026)] == [
        "ten sixty-six", "seventeen seventy-six", "nineteen hundred", "nineteen oh five",
        "nineteen ninety-nine", "two thousand", "two thousand nine", "twenty ten",
        "twenty twenty-six"]


def test_very_long_text():
    sentence = "The 3rd of 12 cats cost $4.25, Dr. Who said."
    one = clean_text(sentence)
    assert one == "the third of twelve cats cost four dollars, twenty-five cents, doctor who said."
    assert clean_text(" ".join([sentence] * 2000)) == " ".join([one] * 2000)
    assert cardinal(10**40) == "one " + " ".join(["zero"] * 40)  # beyond decillion: digit by digit


def test_ids_round_trip():
    for raw in ["Hello, world.", "$3.50 for Dr. Smith in 2026!", "é ñ ß", "(a) \"quoted\"; b: c-d?"]:
        ids = text_to_ids(raw)
        assert ids[-1] == SYMBOLS.index(EOS) and ids.count(SYMBOLS.index(EOS)) == 1
        assert all(0 <= i < 66 for i in ids)
        assert ids_to_text(ids) == clean_text(raw)
        assert ids_to_text(np.array(ids + [0, 0])) == clean_text(raw)  # pads dropped, arrays ok
    ids = text_to_ids("Hi, You!", clean=False)
    assert ids == [SYMBOLS.index(c) for c in "Hi, You!"] + [1]


def test_arpabet():
    with pytest.raises(TextError):
        text_to_ids("say {HH AH L OW}")  # the RTVC table has no phonemes
    ids = text_to_ids("Say {HH AH0 L OW1}  now", arpabet=True)
    table = symbol_table(arpabet=True)
    assert [table[i] for i in ids] == list("say ") + ["@HH", "@AH", "@L", "@OW"] + list(" now") + ["~"]
    assert ids_to_text(ids) == "say {HH AH L OW} now"
    with pytest.raises(TextError):
        text_to_ids("{HH XX}", arpabet=True)
    with pytest.raises(TextError):
        ids_to_text([105])
    arpa = to_arpabet("Hello, world 2 xyzzyq!")
    assert arpa == "{HH AH L OW}, {W ER L D} {T UW} xyzzyq!"  # CMUdict lines; unknown word kept
    assert ids_to_text(text_to_ids(arpa, arpabet=True)) == arpa


TRICKY = ("Dr. Smith met Mrs. Jones vs. Mr. Brown at 3.5 p.m. on St. Patrick's day, e.g. "
          "yesterday. J. K. Rowling wrote books, poems, etc. Then it rained! Did it stop? "
          "Yes. It cost $3.50 in 2026.")


def test_split_sentences_boundaries():
    chunks = split_sentences(TRICKY, first_chunk_words=0)
    assert chunks == [
        "Dr. Smith met Mrs. Jones vs. Mr. Brown at 3.5 p.m. on St. Patrick's day, e.g. yesterday.",
        "J. K. Rowling wrote books, poems, etc.", "Then it rained!", "Did it stop?", "Yes.",
        "It cost $3.50 in 2026."]


def test_split_sentences_first_chunk_and_long_sentences():
    chunks = split_sentences(TRICKY, first_chunk_words=6, max_words=8)
    assert chunks[0] == "Dr. Smith met Mrs. Jones vs."  # no comma in reach: cut at 6 words
    assert split_sentences("Well now, here we go again with a long first sentence.")[0] == "Well now,"
    assert " ".join(chunks).split() == TRICKY.split()
    assert max(len(c.split()) for c in chunks) <= 8
    long = "one two three, four five six seven eight nine ten eleven twelve; thirteen fourteen"
    assert split_sentences(long, first_chunk_words=0, max_words=10) == [
        "one two three,", "four five six seven eight nine ten eleven twelve;", "thirteen fourteen"]


def test_split_sentences_properties():
    rng = random.Random(1)
    vocab = ["the", "cat", "Dr.", "Mrs.", "3.5", "e.g.", "sat,", "on;", "it.", "Why?", "No!",
             "\u00e9t\u00e9", "$3.50", "1st", "A.", "U.S.", "Stop.", "ran", "\U0001F600"]
    for _ in range(200):
        words = ["word"] + [rng.choice(vocab) for _ in range(rng.randrange(0, 120))]
        text = " \n".join(" ".join(words[i:i + 7]) for i in range(0, len(words), 7))
        first, limit = rng.randrange(0, 9), rng.randrange(3, 40)
        chunks = split_sentences(text, first_chunk_words=first, max_words=limit)
        assert " ".join(chunks).split() == text.split()
        for c in chunks:
            text_to_ids(c)  # every chunk is speakable
        sentences = split_sentences(text, first_chunk_words=0, max_words=10**6)
        for s in sentences[:-1]:  # only true sentence ends, never after a title or "e.g."
            assert s.split()[-1][-1] in ".!?" and s.split()[-1] not in ("Dr.", "Mrs.", "e.g.")
        # merging an unspeakable chunk into a neighbour can add one emoji-only chunk's words
        assert all(len(c.split()) <= 2 * limit for c in chunks)
        if first and len(chunks) > 1 and not any("\U0001F600" in c for c in chunks[:2]):
            assert len(chunks[0].split()) <= first


def test_split_sentences_errors():
    with pytest.raises(OptionsError):
        split_sentences("hello", max_words=0)
    with pytest.raises(OptionsError):
        split_sentences("hello", first_chunk_words=-1)
    assert split_sentences("Hello. \U0001F600") == ["Hello. \U0001F600"]  # emoji merged
