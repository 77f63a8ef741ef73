"""The embedded default: real English→French translations that ship with installed packages.

Three sources, read offline:

* ``django`` — the French gettext catalogs Django ships (``django/conf/locale/fr`` and
  every ``contrib`` app's ``locale/fr``), translated by Django's human translators on
  Transifex: UI strings, validation messages, language names. Read by path with
  :func:`read_po`; fuzzy, untranslated and header entries are skipped, a plural entry
  gives its singular and its plural pair, and ``%(name)s`` placeholders are kept as they
  are (a translator must carry them over, and so must the model).
* ``cldr`` — Unicode CLDR's display names through Babel: territories, languages,
  currencies, scripts and variants, each English name paired with its French name.
* ``num2words`` — number phrases from num2words' English and French grammars (cardinals,
  ordinals, years, euro amounts): ``1984`` as a year gives "nineteen eighty-four" →
  "mille neuf cent quatre-vingt-quatre". Numbers are drawn with a seeded generator.

Pairs are deduplicated on the case-folded English side (first source wins, in the order
above) so no English sentence appears in two splits.
"""

from __future__ import annotations

import ast
import itertools
import random
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

SOURCES: tuple[str, ...] = ("django", "cldr", "num2words")
SOURCE_LANG, TARGET_LANG = "en", "fr"

#: Babel ``Locale`` attributes whose values are display names keyed by a code.
CLDR_NAME_TABLES: tuple[str, ...] = ("territories", "languages", "currencies", "scripts", "variants")


@dataclass(frozen=True)
class Pair:
    """One translation pair and where it came from."""

    src: str
    tgt: str
    source: str


# --- Django's gettext catalogs --------------------------------------------------------------


def _po_string(line: str) -> str:
    """The value of one quoted .po string literal (C escapes: ``\\n``, ``\\"``, ``\\\\``, ``\\t``)."""
    return ast.literal_eval(line) if line.startswith('"') else ""


def read_po(path: Path) -> list[tuple[str, str]]:
    """``(msgid, msgstr)`` pairs of a gettext ``.po`` file.

    Multi-line strings are joined, line breaks inside a message become spaces, and
    whitespace is collapsed. Skipped: the header (empty msgid), fuzzy entries, obsolete
    ``#~`` entries and untranslated ones. A plural entry gives ``(msgid, msgstr[0])`` and
    ``(msgid_plural, msgstr[1])``.
    """
    pairs: list[tuple[str, str]] = []
    entry: dict[str, str] = {}
    flags: set[str] = set()
    key: str | None = None

    def flush() -> None:
        nonlocal entry, flags, key
        if "fuzzy" not in flags:
            candidates = [(entry.get("msgid", ""), entry.get("msgstr", entry.get("msgstr[0]", "")))]
            if "msgid_plural" in entry:
                candidates.append((entry["msgid_plural"], entry.get("msgstr[1]", "")))
            for src, tgt in candidates:
                src, tgt = " ".join(src.split()), " ".join(tgt.split())
                if src and tgt:
                    pairs.append((src, tgt))
        entry, flags, key = {}, set(), None

    for raw in Path(path).read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#~"):
            continue
        if line.startswith("#"):
            if key is not None and "msgstr" in (key or ""):
                flush()
            if line.startswith("#,"):
                flags.update(flag.strip() for flag in line[2:].split(","))
            continue
        if line.startswith('"'):
            if key is not None:
                entry[key] += _po_string(line)
            continue
        word, _, rest = line.partition(" ")
        if word in ("msgid", "msgctxt") and key is not None and key.startswith("msgstr"):
            flush()
        key = word
        entry[key] = _po_string(rest.strip())
    if entry:
        flush()
    return pairs


def django_catalogs() -> list[Path]:
    """Every French ``.po`` catalog inside the installed Django package, in a fixed order."""
    import django

    root = Path(django.__file__).parent
    return sorted(root.glob(f"**/locale/{TARGET_LANG}/LC_MESSAGES/*.po"), key=lambda p: p.relative_to(root).as_posix())


def django_pairs() -> list[Pair]:
    """The en→fr message pairs of Django's catalogs (see :func:`read_po`)."""
    return [Pair(src, tgt, "django") for path in django_catalogs() for src, tgt in read_po(path)]


# --- CLDR display names through Babel -------------------------------------------------------


def cldr_pairs() -> list[Pair]:
    """English and French CLDR display names of every code both locales name."""
    from babel import Locale

    en, fr = Locale(SOURCE_LANG), Locale(TARGET_LANG)
    pairs = []
    for table in CLDR_NAME_TABLES:
        english, french = getattr(en, table), getattr(fr, table)
        for code in sorted(english):
            src, tgt = english[code], french.get(code)
            if isinstance(src, str) and isinstance(tgt, str) and src and tgt:
                pairs.append(Pair(src, tgt, "cldr"))
    return pairs


# --- num2words phrases -----------------------------------------------------------------------

#: num2words conversions used, with the range numbers are drawn from (log-uniform magnitude).
NUMBER_KINDS: tuple[str, ...] = ("cardinal", "ordinal", "year", "currency")


def _draw_number(rng: random.Random, kind: str) -> float | int:
    if kind == "year":
        return rng.randint(1000, 2099)
    if kind == "currency":
        return round(rng.randint(1, 10 ** rng.randint(1, 5)) + rng.choice((0, 0, rng.randint(1, 99) / 100)), 2)
    return rng.randint(0, 10 ** rng.randint(1, 7))


def _say(number: float | int, kind: str, lang: str) -> str:
    from num2words import num2words

    if kind == "currency":
        return num2words(number, lang=lang, to="currency", currency="EUR")
    return num2words(number, lang=lang, to=kind)


def number_pairs(seed: int) -> Iterator[Pair]:
    """Distinct num2words en→fr phrases, drawn with ``seed``, without end."""
    rng = random.Random(seed)
    seen: set[str] = set()
    while True:
        kind = rng.choice(NUMBER_KINDS)
        number = _draw_number(rng, kind)
        src = _say(number, kind, SOURCE_LANG)
        if src.casefold() not in seen:
            seen.add(src.casefold())
            yield Pair(src, _say(number, kind, TARGET_LANG), "num2words")


# --- the mix ---------------------------------------------------------------------------------


def dedupe(pairs: Iterable[Pair]) -> Iterator[Pair]:
    """``pairs`` without repeats of an English side (case-folded); the first one wins."""
    seen: set[str] = set()
    for pair in pairs:
        key = pair.src.casefold()
        if key not in seen:
            seen.add(key)
            yield pair


_SPACE = re.compile(r"\s+")


def default_pairs(num2words_count: int, seed: int, max_chars: int) -> list[Pair]:
    """Every Django and CLDR pair up to ``max_chars`` characters a side, then ``num2words_count``
    number phrases, deduplicated on the English side, in a fixed order."""
    real = list(dedupe(p for p in (*django_pairs(), *cldr_pairs()) if max(len(p.src), len(p.tgt)) <= max_chars))
    taken = {p.src.casefold() for p in real}
    fitting = (p for p in number_pairs(seed) if max(len(p.src), len(p.tgt)) <= max_chars and p.src.casefold() not in taken)
    return real + list(itertools.islice(fitting, num2words_count))
