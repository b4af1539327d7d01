"""Strict semantic versions and npm-style version ranges.

Manifests use ranges in ``engine`` and ``requires``. The grammar and meaning
follow npm's ``node-semver``:

* comparator sets joined by ``||`` (any set may match);
* inside a set, comparators separated by spaces (all must match):
  ``>=1.0.0 <2.0.0``;
* caret ``^1.2.3`` (compatible: same left-most non-zero part), tilde ``~1.2.3``
  (same minor), x-ranges ``1.x``, ``1.2.*``, ``*``, hyphen ranges
  ``1.0.0 - 2.3.4`` and partial versions (``>=1.2`` means ``>=1.2.0``);
* a pre-release version only satisfies a range when one comparator of the
  matching set names a pre-release of the same ``major.minor.patch``, so
  ``^1.0.0`` never pulls in ``2.0.0-beta.1`` nor ``1.5.0-rc.1``.

Versions themselves are strict semver (``1.2.3``, ``1.2.3-rc.1+build.5``), as
parsed by the ``semver`` package.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

import semver

from gears_sdk.errors import RangeError

Version = semver.Version

_OPS = ("<=", ">=", "<", ">", "=")
_X = {"x", "X", "*"}
_PART = r"(?:0|[1-9]\d*|[xX*])"
_PRE = r"(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?"
_PARTIAL = re.compile(rf"^v?({_PART})(?:\.({_PART})(?:\.({_PART})({_PRE}))?)?$")
_MAX_RANGE_LENGTH = 256


def parse_version(text: str) -> Version:
    """Parse a strict semver string; raise :class:`RangeError` with a clear message."""
    if not isinstance(text, str):
        raise RangeError(f"a version must be a string, not {type(text).__name__}")
    try:
        return Version.parse(text)
    except (ValueError, TypeError):
        raise RangeError(
            f"{text!r} is not a semantic version",
            hint="write MAJOR.MINOR.PATCH, e.g. 1.2.0 or 1.2.0-rc.1",
        ) from None


def precedence_key(text: str) -> str:
    """The version without its build metadata: two versions have the same semver
    precedence exactly when their keys are equal (strict semver has no leading zeros,
    so the text is canonical). The registry keeps one archive per key and gear."""
    return str(parse_version(text).replace(build=None))


def is_valid_version(text: object) -> bool:
    """True when ``text`` is a strict semver string."""
    return isinstance(text, str) and Version.is_valid(text)


@dataclass(frozen=True)
class Comparator:
    """One ``op version`` test, e.g. ``>=1.2.0``."""

    op: str
    version: Version

    def test(self, v: Version) -> bool:
        c = v.compare(self.version)
        return {
            "<": c < 0,
            "<=": c <= 0,
            ">": c > 0,
            ">=": c >= 0,
            "=": c == 0,
        }[self.op]

    def __str__(self) -> str:
        return f"{'' if self.op == '=' else self.op}{self.version}"


@dataclass(frozen=True)
class Range:
    """A parsed range: a disjunction of comparator sets."""

    raw: str
    sets: tuple[tuple[Comparator, ...], ...]

    def matches(self, version: Version | str) -> bool:
        """True when ``version`` satisfies the range (npm pre-release rule)."""
        v = parse_version(version) if isinstance(version, str) else version
        return any(_set_matches(s, v) for s in self.sets)

    __contains__ = matches

    def best(self, versions: Iterable[Version | str]) -> Version | None:
        """The highest of ``versions`` that satisfies the range, or ``None``."""
        ok = [parse_version(v) if isinstance(v, str) else v for v in versions]
        ok = [v for v in ok if self.matches(v)]
        return max(ok) if ok else None

    def normalized(self) -> str:
        """The range as plain comparators, e.g. ``>=1.2.0 <2.0.0``."""
        return " || ".join(" ".join(map(str, s)) or "*" for s in self.sets)

    def __str__(self) -> str:
        return self.raw


def _set_matches(comparators: tuple[Comparator, ...], v: Version) -> bool:
    if not all(c.test(v) for c in comparators):
        return False
    if v.prerelease is None:
        return True
    # npm: a pre-release only matches when a comparator of this set names a
    # pre-release on the very same major.minor.patch.
    return any(
        c.version.prerelease is not None
        and (c.version.major, c.version.minor, c.version.patch) == (v.major, v.minor, v.patch)
        for c in comparators
    )


@lru_cache(maxsize=4096)
def parse_range(text: str) -> Range:
    """Parse an npm-style range. Raises :class:`RangeError` naming the bad part."""
    if not isinstance(text, str):
        raise RangeError(f"a version range must be a string, not {type(text).__name__}")
    if len(text) > _MAX_RANGE_LENGTH:
        raise RangeError(f"a version range may be at most {_MAX_RANGE_LENGTH} characters")
    sets = tuple(_parse_set(part.strip(), text) for part in text.split("||"))
    return Range(raw=text.strip(), sets=sets)


def runs_on(engine_range: object, engine: Version | str) -> bool:
    """Whether a manifest's ``engine`` range (``None`` or empty: any) includes the
    engine version ``engine``; a range that does not parse includes nothing."""
    if engine_range is None or (isinstance(engine_range, str) and not engine_range.strip()):
        return True
    try:
        return parse_range(engine_range).matches(engine)
    except (RangeError, ValueError, TypeError):
        return False


def is_valid_range(text: object) -> bool:
    """True when ``text`` parses as a range."""
    try:
        parse_range(text)  # type: ignore[arg-type,unused-ignore]
    except RangeError:
        return False
    return True


def _parse_set(text: str, whole: str) -> tuple[Comparator, ...]:
    if text in ("", "*", "x", "X"):
        return ()
    hyphen = re.fullmatch(r"(\S+)\s+-\s+(\S+)", text)
    if hyphen:
        return _hyphen(hyphen.group(1), hyphen.group(2), whole)
    # Allow "> = 1.0"-style spacing between an operator and its version.
    tokens = re.sub(r"(<=|>=|<|>|=|\^|~)\s+", r"\1", text).split()
    out: list[Comparator] = []
    for tok in tokens:
        out.extend(_parse_comparator(tok, whole))
    return tuple(out)


def _partial(text: str, whole: str) -> tuple[int | None, int | None, int | None, str]:
    m = _PARTIAL.match(text)
    if not m:
        raise RangeError(
            f"{whole!r} is not a valid version range: cannot read {text!r}",
            hint="use forms like ^1.2.0, ~1.2, >=1.0.0 <2.0.0, 1.x or *",
        )
    nums: list[int | None] = []
    for g in m.group(1, 2, 3):
        nums.append(None if g is None or g in _X else int(g))
    # "1.x.3" is meaningless: once a part is open, the rest must be too.
    seen_open = False
    for n in nums:
        if n is None:
            seen_open = True
        elif seen_open:
            raise RangeError(f"{whole!r} is not a valid version range: {text!r} has a number after x")
    rest = m.group(4) or ""
    if rest and nums[2] is None:
        raise RangeError(f"{whole!r}: a pre-release needs a full version in {text!r}")
    return nums[0], nums[1], nums[2], rest


def _v(major: int, minor: int = 0, patch: int = 0, rest: str = "") -> Version:
    return Version.parse(f"{major}.{minor}.{patch}{rest}")


def _parse_comparator(tok: str, whole: str) -> list[Comparator]:
    if tok.startswith("^"):
        return _caret(tok[1:], whole)
    if tok.startswith("~"):
        return _tilde(tok[1:].lstrip(">"), whole)
    op = next((o for o in _OPS if tok.startswith(o)), "")
    major, minor, patch, rest = _partial(tok[len(op):], whole)
    if major is None:
        # "*", ">=*" match everything; "<*", ">*" match nothing.
        if op in ("<", ">"):
            return [Comparator("<", _v(0, 0, 0, "-0"))]
        return []
    if op in ("", "="):
        if patch is not None:
            return [Comparator("=", _v(major, minor or 0, patch, rest))]
        return _x_range(major, minor)
    lo = _v(major, minor or 0, patch or 0, rest)
    if patch is not None:
        return [Comparator(op, lo)]
    # Partial versions with an operator: npm semantics.
    nxt = _v(major + 1) if minor is None else _v(major, minor + 1)
    return {
        ">": [Comparator(">=", nxt)],
        ">=": [Comparator(">=", lo)],
        "<": [Comparator("<", lo)],
        "<=": [Comparator("<", nxt)],
    }[op]


def _x_range(major: int, minor: int | None) -> list[Comparator]:
    if minor is None:
        return [Comparator(">=", _v(major)), Comparator("<", _v(major + 1))]
    return [Comparator(">=", _v(major, minor)), Comparator("<", _v(major, minor + 1))]


def _caret(text: str, whole: str) -> list[Comparator]:
    major, minor, patch, rest = _partial(text, whole)
    if major is None:
        return []
    lo = _v(major, minor or 0, patch or 0, rest)
    if major > 0 or minor is None:
        hi = _v(major + 1)
    elif minor > 0 or patch is None:
        hi = _v(0, minor + 1)
    else:
        hi = _v(0, 0, patch + 1)
    return [Comparator(">=", lo), Comparator("<", hi)]


def _tilde(text: str, whole: str) -> list[Comparator]:
    major, minor, patch, rest = _partial(text, whole)
    if major is None:
        return []
    lo = _v(major, minor or 0, patch or 0, rest)
    hi = _v(major + 1) if minor is None else _v(major, minor + 1)
    return [Comparator(">=", lo), Comparator("<", hi)]


def _hyphen(a: str, b: str, whole: str) -> tuple[Comparator, ...]:
    amaj, amin, apat, arest = _partial(a, whole)
    bmaj, bmin, bpat, brest = _partial(b, whole)
    out: list[Comparator] = []
    if amaj is not None:
        out.append(Comparator(">=", _v(amaj, amin or 0, apat or 0, arest)))
    if bmaj is not None:
        if bpat is not None:
            out.append(Comparator("<=", _v(bmaj, bmin or 0, bpat, brest)))
        elif bmin is not None:
            out.append(Comparator("<", _v(bmaj, bmin + 1)))
        else:
            out.append(Comparator("<", _v(bmaj + 1)))
    return tuple(out)
