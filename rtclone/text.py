"""Text front-end: English cleaners, the RTVC symbol table, text ↔ ids, ARPAbet, streaming chunks.

The symbol table is RTVC's 66 entries (pad ``_``, eos ``~``, ``A``–``Z``, ``a``–``z``,
``!'"(),-.:;? ``), so RTVC synthesizer checkpoints map id for id. ARPAbet is opt-in: with
``arpabet=True`` the table is extended *after* those 66 entries by the 39 CMUdict phonemes
written ``@AA`` … ``@ZH`` (ids 66–104), so a model trained with ARPAbet needs an embedding of
``len(symbol_table(arpabet=True))`` rows, while the first 66 ids keep their RTVC meaning.
Stress digits in user ARPAbet (``{HH AH0 L OW1}``) are accepted and dropped, because the
dictionary we ship with (pocketsphinx's ``cmudict-en-us.dict``) has no stress marks.
"""

from __future__ import annotations

import functools
import importlib.resources
import re
from collections.abc import Iterable

from unidecode import unidecode

from rtclone.errors import BackendUnavailableError, OptionsError, TextError
from rtclone.numbers import normalize_numbers

__all__ = [
    "SYMBOLS", "PAD", "EOS", "ARPABET", "ARPABET_SYMBOLS", "symbol_table",
    "clean_text", "text_to_ids", "ids_to_text", "to_arpabet", "split_sentences",
]

PAD, EOS = "_", "~"
_PUNCTUATION = "!'\"(),-.:;? "
SYMBOLS: list[str] = [PAD, EOS] + [chr(c) for c in range(ord("A"), ord("Z") + 1)] \
    + [chr(c) for c in range(ord("a"), ord("z") + 1)] + list(_PUNCTUATION)
ARPABET: list[str] = ("AA AE AH AO AW AY B CH D DH EH ER EY F G HH IH IY JH K L M N NG OW OY "
                      "P R S SH T TH UH UW V W Y Z ZH").split()
ARPABET_SYMBOLS: list[str] = ["@" + p for p in ARPABET]
_SYMBOLS_ARPABET = SYMBOLS + ARPABET_SYMBOLS
_ID = {s: i for i, s in enumerate(_SYMBOLS_ARPABET)}
PAD_ID, EOS_ID = _ID[PAD], _ID[EOS]


def symbol_table(arpabet: bool = False) -> list[str]:
    """The symbol list a model's embedding is indexed by (66 entries, or 105 with ARPAbet)."""
    return list(_SYMBOLS_ARPABET if arpabet else SYMBOLS)


# ---- cleaners -----------------------------------------------------------------------------------
_ABBREVIATIONS = {
    "mrs": "missus", "mr": "mister", "ms": "miss", "dr": "doctor", "drs": "doctors",
    "prof": "professor", "jr": "junior", "sr": "senior", "rev": "reverend", "hon": "honorable",
    "gen": "general", "col": "colonel", "maj": "major", "capt": "captain", "lt": "lieutenant",
    "sgt": "sergeant", "esq": "esquire", "co": "company", "ltd": "limited", "inc": "incorporated",
    "ft": "fort", "mt": "mount", "vs": "versus", "etc": "et cetera", "approx": "approximately",
    "dept": "department", "jan": "january", "feb": "february", "aug": "august",
    "sept": "september", "oct": "october", "nov": "november", "dec": "december",
}
_ABBREV_RE = re.compile(r"\b(" + "|".join(_ABBREVIATIONS) + r")\.", re.IGNORECASE)
_DOTTED = [(re.compile(r"\be\.g\.", re.IGNORECASE), "for example"),
           (re.compile(r"\bi\.e\.", re.IGNORECASE), "that is"),
           (re.compile(r"\ba\.m\.", re.IGNORECASE), "a m"),
           (re.compile(r"\bp\.m\.", re.IGNORECASE), "p m")]
# "St." before a capitalised word is "Saint" (St. Louis), otherwise "street" (Main St.)
_SAINT_RE = re.compile(r"\b[Ss][Tt]\.(?=\s+[A-Z])")
_STREET_RE = re.compile(r"\bst\.", re.IGNORECASE)
_SIGNS = {"&": " and ", "%": " percent ", "@": " at ", "+": " plus ", "=": " equals "}
_SIGN_RE = re.compile("|".join(re.escape(s) for s in _SIGNS))
_UNSPEAKABLE_RE = re.compile("[^" + re.escape("".join(SYMBOLS[2:])) + "]")
_SPACES_RE = re.compile(r"\s+")
_LETTER_RE = re.compile(r"[a-z]")


def _clean_fragment(text: str) -> str:
    """Clean without stripping the ends or checking that anything is left."""
    text = normalize_numbers(text)      # first: "£5" and "€3" lose their symbol in unidecode
    text = normalize_numbers(unidecode(text))  # digits that only unidecode made ASCII
    text = _SAINT_RE.sub("saint", text)
    text = _STREET_RE.sub("street", text)
    for pattern, words in _DOTTED:
        text = pattern.sub(words, text)
    text = _ABBREV_RE.sub(lambda m: _ABBREVIATIONS[m.group(1).lower()], text)
    text = _SIGN_RE.sub(lambda m: _SIGNS[m.group(0)], text).lower()
    text = _UNSPEAKABLE_RE.sub(" ", text)   # a dropped character still separates words
    return _SPACES_RE.sub(" ", text)


def clean_text(text: str) -> str:
    """English cleaners: ASCII, numbers and abbreviations spelled out, lowercase, whitespace folded.

    Characters outside the symbol table are dropped. Raises ``TextError`` for empty text or
    text with nothing speakable left (e.g. only emoji or punctuation).
    """
    if not isinstance(text, str):
        raise TextError(f"text must be a str, got {type(text).__name__}")
    if not text.strip():
        raise TextError("empty or whitespace-only text")
    cleaned = _clean_fragment(text).strip()
    if not _LETTER_RE.search(cleaned):
        raise TextError(f"nothing speakable in the text {text[:60]!r}")
    return cleaned


# ---- ids ----------------------------------------------------------------------------------------
_BRACES_RE = re.compile(r"\{([^{}]*)\}")


def _arpabet_symbols(spec: str) -> list[str]:
    out = []
    for phone in spec.split():
        base = phone.upper().rstrip("012")
        if base not in ARPABET:
            raise TextError(f"unknown ARPAbet phoneme {phone!r} in {{{spec}}}")
        out.append("@" + base)
    return out


def text_to_ids(text: str, *, clean: bool = True, arpabet: bool = False) -> list[int]:
    """Text → symbol ids, with the EOS id appended.

    ``{HH AH L OW}`` spans are ARPAbet and need ``arpabet=True`` (the extended table; see the
    module docstring); without it they raise ``TextError``. With ``clean=False`` the text is
    used as is and characters outside the table are dropped. Raises ``TextError`` if nothing
    speakable remains.
    """
    if not isinstance(text, str):
        raise TextError(f"text must be a str, got {type(text).__name__}")
    if not text.strip():
        raise TextError("empty or whitespace-only text")
    symbols: list[str] = []
    pos = 0
    for m in [*_BRACES_RE.finditer(text), None]:
        plain = text[pos:m.start() if m else len(text)]
        plain = _clean_fragment(plain) if clean else plain
        symbols.extend(c for c in plain if c in _ID and c not in (PAD, EOS))
        if m is None:
            break
        if not arpabet:
            raise TextError("ARPAbet in {braces} needs arpabet=True (a model with the extended table)")
        symbols.extend(_arpabet_symbols(m.group(1)))
        pos = m.end()
    if clean:  # fold the spaces met at the seams of plain and ARPAbet spans, strip the ends
        symbols = [s for i, s in enumerate(symbols) if s != " " or (i and symbols[i - 1] != " ")]
        while symbols and symbols[-1] == " ":
            symbols.pop()
        while symbols and symbols[0] == " ":
            symbols.pop(0)
    if not any(s.isalpha() or s.startswith("@") for s in symbols):
        raise TextError(f"nothing speakable in the text {text[:60]!r}")
    return [_ID[s] for s in symbols] + [EOS_ID]


def ids_to_text(ids: Iterable[int]) -> str:
    """Ids → text; pad and EOS are dropped, ARPAbet runs come back as ``{HH AH L OW}``."""
    out: list[str] = []
    in_arpabet = False
    for i in ids:
        i = int(i)
        if not 0 <= i < len(_SYMBOLS_ARPABET):
            raise TextError(f"id {i} is not in the symbol table")
        s = _SYMBOLS_ARPABET[i]
        if s in (PAD, EOS):
            continue
        is_phone = s.startswith("@")
        if is_phone:
            out.append(" " + s[1:] if in_arpabet else "{" + s[1:])
        elif in_arpabet:
            out.append("}" + s)
        else:
            out.append(s)
        in_arpabet = is_phone
    return "".join(out) + ("}" if in_arpabet else "")


# ---- ARPAbet ------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _cmudict() -> dict[str, str]:
    """word → first pronunciation, read once from the CMUdict in pocketsphinx's wheel."""
    try:
        path = importlib.resources.files("pocketsphinx") / "model" / "en-us" / "cmudict-en-us.dict"
        lines = path.read_text(encoding="utf-8").splitlines()
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise BackendUnavailableError("CMUdict not found: install pocketsphinx (>= 5)") from exc
    table: dict[str, str] = {}
    for line in lines:
        word, _, phones = line.partition(" ")
        if phones and "(" not in word:
            table.setdefault(word, phones.strip())
    return table


_WORD_RE = re.compile(r"[a-z]+(?:'[a-z]+)*")


def to_arpabet(text: str) -> str:
    """Clean ``text`` and write each word CMUdict knows as ``{ARPAbet}``; others stay as letters.

    ``to_arpabet("Hello, world 2")`` → ``"{HH AH L OW}, {W ER L D} {T UW}"``. Feed the result
    to ``text_to_ids(..., arpabet=True)``.
    """
    table = _cmudict()
    return _WORD_RE.sub(lambda m: "{%s}" % table[m.group(0)] if m.group(0) in table else m.group(0),
                        clean_text(text))


# ---- streaming chunks ---------------------------------------------------------------------------
# a token ending with one of these abbreviations never ends a sentence ("Dr. Smith", "e.g. this")
_NEVER_ENDS = {"mr", "mrs", "ms", "dr", "drs", "prof", "rev", "hon", "gen", "col", "maj", "capt",
               "lt", "sgt", "st", "mt", "ft", "vs", "e.g", "i.e", "cf", "approx", "fig", "no"}
# these end a sentence only before a capitalised word ("etc. Then", "Jr. He")
_MAYBE_ENDS = {"etc", "jr", "sr", "inc", "ltd", "co", "esq", "a.m", "p.m", "dept"}
_CLOSERS = "\"')]}"


def _ends_sentence(token: str, next_token: str | None) -> bool:
    core = token.rstrip(_CLOSERS)
    if not core or core[-1] not in ".!?":
        return False
    if core[-1] in "!?" or core.endswith(".."):
        return True
    word = core[:-1].lstrip("\"'([{").lower()
    next_upper = next_token is not None and next_token.lstrip("\"'([{")[:1].isupper()
    if word in _NEVER_ENDS:
        return False
    if len(word) == 1 and word.isalpha():  # an initial: "J. K. Rowling"
        return False
    if word in _MAYBE_ENDS or re.fullmatch(r"(?:[a-z]\.)+[a-z]", word):  # "U.S." acronyms
        return next_token is None or next_upper
    return True


def _clause_end(token: str) -> bool:
    return token.rstrip(_CLOSERS)[-1:] in (",", ";", ":") or token in ("-", "--", "\u2014")


def _split_at_clauses(tokens: list[str], limit: int) -> list[list[str]]:
    """Split a token list into pieces of at most ``limit`` words, preferring clause ends."""
    pieces, start, min_piece = [], 0, max(1, limit // 3)
    while len(tokens) - start > limit:
        cuts = [p for p in range(start + min_piece, start + limit + 1) if _clause_end(tokens[p - 1])]
        cut = cuts[-1] if cuts else start + limit
        pieces.append(tokens[start:cut])
        start = cut
    pieces.append(tokens[start:])
    return pieces


def _speakable(tokens: list[str]) -> bool:
    return any(c.isalnum() for c in unidecode(" ".join(tokens)))


def split_sentences(text: str, *, first_chunk_words: int = 6, max_words: int = 30) -> list[str]:
    """Split text into chunks for streaming synthesis.

    Chunks end at sentence boundaries (not after "Dr.", "e.g.", initials, or inside "3.5");
    the first chunk has at most ``first_chunk_words`` words (cut at a comma when there is one,
    so audio can start early; 0 turns this off); longer sentences are cut at commas, semicolons
    or colons, or at ``max_words`` words. Chunks are raw text (clean them with ``text_to_ids``);
    ``" ".join(chunks).split() == text.split()``. A chunk with nothing speakable (an emoji,
    "...") is merged into its neighbour.
    """
    if first_chunk_words < 0 or max_words < 1:
        raise OptionsError(f"need first_chunk_words >= 0 and max_words >= 1, "
                           f"got {first_chunk_words} and {max_words}")
    if not isinstance(text, str) or not text.strip():
        raise TextError("empty text")
    tokens = text.split()
    sentences, start = [], 0
    for i, token in enumerate(tokens):
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        if nxt is None or _ends_sentence(token, nxt):
            sentences.append(tokens[start:i + 1])
            start = i + 1
    chunks = [piece for sentence in sentences for piece in _split_at_clauses(sentence, max_words)]
    if first_chunk_words and len(chunks[0]) > first_chunk_words:
        first = _split_at_clauses(chunks[0], first_chunk_words)[0]
        chunks[:1] = [first, chunks[0][len(first):]]
    merged: list[list[str]] = []
    for chunk in chunks:
        if merged and (not _speakable(chunk) or not _speakable(merged[-1])):
            merged[-1] = merged[-1] + chunk
        else:
            merged.append(chunk)
    return [" ".join(chunk) for chunk in merged]
