"""English number normalisation for the text front-end: digits → words.

``normalize_numbers`` rewrites currency ("$3.50" → "three dollars, fifty cents"), percentages,
clock times, ordinals ("21st"), decimals ("3.14"), digit groups ("1,000,000"), years
("in 2026" → "twenty twenty-six": any plain four-digit number from 1100 to 2099 is read as a
year) and plain cardinals. It works on ASCII digits, so ``rtclone.text`` runs it after unidecode.
A self-contained speller (no inflect) keeps imports fast and has no upper range limit: numbers
longer than :data:`MAX_CARDINAL_DIGITS` digits are read digit by digit.
"""

from __future__ import annotations

import re

__all__ = ["cardinal", "ordinal", "year", "digits", "normalize_numbers", "MAX_CARDINAL_DIGITS"]

_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
         "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
         "eighteen", "nineteen"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_SCALES = ["", "thousand", "million", "billion", "trillion", "quadrillion", "quintillion",
           "sextillion", "septillion", "octillion", "nonillion", "decillion"]
MAX_CARDINAL_DIGITS = 3 * len(_SCALES)  # longer digit strings are read digit by digit

# ordinal forms of the words a cardinal can end with; other words just take "th"
_ORDINAL_WORDS = {"one": "first", "two": "second", "three": "third", "five": "fifth",
                  "eight": "eighth", "nine": "ninth", "twelve": "twelfth"}


def _below_thousand(n: int) -> str:
    words = []
    if n >= 100:
        words.append(f"{_ONES[n // 100]} hundred")
        n %= 100
    if n >= 20:
        words.append(_TENS[n // 10] + (f"-{_ONES[n % 10]}" if n % 10 else ""))
    elif n or not words:
        words.append(_ONES[n])
    return " ".join(words)


def digits(s: str) -> str:
    """Read a digit string digit by digit: "007" → "zero zero seven"."""
    return " ".join(_ONES[int(c)] for c in s if c.isdigit())


def cardinal(n: int) -> str:
    """Spell an integer: 1234 → "one thousand two hundred thirty-four" (no "and", no commas)."""
    if n < 0:
        return "minus " + cardinal(-n)
    if n == 0:
        return "zero"
    if len(str(n)) > MAX_CARDINAL_DIGITS:
        return digits(str(n))
    groups = []
    scale = 0
    while n:
        n, rest = divmod(n, 1000)
        if rest:
            groups.append(_below_thousand(rest) + (f" {_SCALES[scale]}" if scale else ""))
        scale += 1
    return " ".join(reversed(groups))


def ordinal(n: int) -> str:
    """Spell an ordinal: 1 → "first", 22 → "twenty-second", 100 → "one hundredth"."""
    words = cardinal(n)
    head, sep, last = words.rpartition(" ")
    pre, dash, unit = last.rpartition("-")
    if unit in _ORDINAL_WORDS:
        unit = _ORDINAL_WORDS[unit]
    elif unit.endswith("y"):
        unit = unit[:-1] + "ieth"
    else:
        unit += "th"
    return head + sep + pre + dash + unit


def year(n: int) -> str:
    """Read a year the way people say it: 1905 → "nineteen oh five", 2026 → "twenty twenty-six"."""
    if not 1000 <= n <= 9999:
        return cardinal(n)
    hi, lo = divmod(n, 100)
    if n % 1000 == 0 or (n // 100) % 10 == 0 and lo < 10:  # 2000, 2005, 1009 → cardinal
        return cardinal(n)
    if lo == 0:
        return f"{cardinal(hi)} hundred"
    return f"{cardinal(hi)} {'oh ' + _ONES[lo] if lo < 10 else cardinal(lo)}"


def _int(s: str) -> int:
    return int(s.replace(",", ""))


def _integer_words(s: str) -> str:
    """Cardinal for a digit string (commas allowed); leading zeros or huge lengths → digits."""
    plain = s.replace(",", "")
    if len(plain) > 1 and plain.startswith("0") or len(plain) > MAX_CARDINAL_DIGITS:
        return digits(plain)
    return cardinal(int(plain))


# currency symbol → (singular, plural, sub-unit singular, sub-unit plural)
_CURRENCIES = {"$": ("dollar", "dollars", "cent", "cents"),
               "£": ("pound", "pounds", "penny", "pence"),
               "€": ("euro", "euros", "cent", "cents")}
_NUM = r"\d{1,3}(?:,\d{3})+|\d+"
_CURRENCY_RE = re.compile(r"([$£€])\s?(" + _NUM + r")(?:\.(\d+))?"
                          r"(?:\s+(thousand|million|billion|trillion)\b)?", re.IGNORECASE)
_PERCENT_RE = re.compile(r"(\d)\s?%")
_TIME_RE = re.compile(r"\b([01]?\d|2[0-3]):([0-5]\d)\b")
_ORDINAL_RE = re.compile(r"\b(" + _NUM + r")(st|nd|rd|th)\b", re.IGNORECASE)
_DECIMAL_RE = re.compile(r"(" + _NUM + r")?\.(\d+)")
_GROUPED_RE = re.compile(r"\b\d{1,3}(?:,\d{3})+\b")
_MINUS_RE = re.compile(r"(?<![\w.-])-(?=\d)")
_GLUED_RE = re.compile(r"(?<=[A-Za-z])(?=\d)|(?<=\d)(?=[A-Za-z])")  # "mp3" → "mp 3"
_INT_RE = re.compile(r"\d+")


def _plural(n: int, one: str, many: str) -> str:
    return one if n == 1 else many


def _currency(m: re.Match) -> str:
    unit, units, sub, subs = _CURRENCIES[m.group(1)]
    whole, frac, scale = m.group(2), m.group(3), m.group(4)
    if scale:  # "$3.5 million" → "three point five million dollars"
        number = _integer_words(whole) + (f" point {digits(frac)}" if frac else "")
        return f"{number} {scale.lower()} {units}"
    if frac is not None and len(frac) > 2:  # "$0.125" → "zero point one two five dollars"
        return f"{_integer_words(whole)} point {digits(frac)} {units}"
    n, cents = _int(whole), int(frac.ljust(2, "0")) if frac else 0
    parts = []
    if n or not cents:
        parts.append(f"{_integer_words(whole)} {_plural(n, unit, units)}")
    if cents:
        parts.append(f"{cardinal(cents)} {_plural(cents, sub, subs)}")
    return ", ".join(parts)


def _time(m: re.Match) -> str:
    hour, minute = int(m.group(1)), int(m.group(2))
    if minute == 0:
        return f"{cardinal(hour)} o'clock" if hour <= 12 else f"{cardinal(hour)} hundred"
    return f"{cardinal(hour)} {'oh ' + _ONES[minute] if minute < 10 else cardinal(minute)}"


def _decimal(m: re.Match) -> str:
    whole = _integer_words(m.group(1)) if m.group(1) else "point"
    return (f"{whole} point " if m.group(1) else "point ") + digits(m.group(2))


def _plain(m: re.Match) -> str:
    s = m.group(0)
    if len(s) == 4 and 1100 <= int(s) <= 2099:
        return year(int(s))
    return _integer_words(s)


def normalize_numbers(text: str) -> str:
    """Replace every number in ``text`` (ASCII digits) by English words."""
    text = _CURRENCY_RE.sub(_currency, text)
    text = _PERCENT_RE.sub(r"\1 percent", text)
    text = _TIME_RE.sub(_time, text)
    text = _ORDINAL_RE.sub(lambda m: ordinal(_int(m.group(1))), text)
    text = _GLUED_RE.sub(" ", text)
    text = _MINUS_RE.sub("minus ", text)
    text = _DECIMAL_RE.sub(_decimal, text)
    text = _GROUPED_RE.sub(lambda m: _integer_words(m.group(0)), text)
    return _INT_RE.sub(_plain, text)
