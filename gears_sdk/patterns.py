"""Regular expressions that run in linear time on hostile text.

Python's :mod:`re` backtracks: a pattern with ambiguous repetition (``[a-z.]*token[a-z]*``
searched through a long run of letters) costs quadratic or exponential time, so
one uploaded file with a 16,000-character line took 7.6 s in one check, and a
gear's ``config_schema`` may carry any pattern its author likes. Every pattern
applied to uploaded archives, manifests, configs or request values is compiled
here instead, with RE2 (``google-re2``): an automaton whose time is linear in
the length of the text, whatever the pattern. RE2 has no backreferences or
lookaround; a pattern that needs them is refused with :class:`PatternError`
rather than run by a backtracking engine.

RE2's ``$`` matches only at the very end of the text (unless ``(?m)``), which is
what JSON Schema (ECMA-262) means by it, so ``"buyers\\n"`` never passes a
``^[a-z]+$`` check as it does with :mod:`re`.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from typing import Any

import jsonschema
import re2
from jsonschema import Draft202012Validator, ValidationError

#: RE2's memory budget for one compiled pattern (bytes); a larger automaton is refused.
MAX_PATTERN_MEMORY = 8 << 20
#: Longest pattern accepted from an untrusted schema.
MAX_PATTERN_LENGTH = 4096


class PatternError(ValueError):
    """A pattern RE2 cannot run (backreferences, lookaround, too large)."""


Pattern = Any  # re2._Regexp: search/match/fullmatch/finditer/findall like re.Pattern


def _options() -> Any:
    options = re2.Options()
    options.log_errors = False  # a refused pattern is our error to report, not a log line
    options.max_mem = MAX_PATTERN_MEMORY
    return options


@lru_cache(maxsize=1024)
def compile(pattern: str) -> Pattern:
    """``pattern`` compiled for linear-time matching; :class:`PatternError` when RE2
    cannot run it."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise PatternError(f"the pattern is {len(pattern)} characters long; at most "
                           f"{MAX_PATTERN_LENGTH}")
    try:
        return re2.compile(pattern, _options())
    except re2.error as exc:
        reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
        raise PatternError(f"the pattern {pattern[:80]!r} cannot be matched in linear time: "
                           f"{reason}") from None


def is_linear(pattern: Any) -> bool:
    """Whether ``pattern`` is a compiled linear-time pattern (what tests assert)."""
    return isinstance(pattern, re2._Regexp)


def _pattern(validator: Any, pattern: str, instance: Any,
             schema: dict[str, Any]) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "string"):
        return
    try:
        compiled = compile(pattern)
    except PatternError as exc:
        yield ValidationError(str(exc))
        return
    if not compiled.search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _pattern_properties(validator: Any, patterns: dict[str, Any], instance: Any,
                        schema: dict[str, Any]) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        try:
            compiled = compile(pattern)
        except PatternError as exc:
            yield ValidationError(str(exc))
            continue
        for key, value in instance.items():
            if compiled.search(key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _additional_properties(validator: Any, additional: Any, instance: Any,
                           schema: dict[str, Any]) -> Iterator[ValidationError]:
    # jsonschema's own version searches ``patternProperties`` with :mod:`re`.
    if not validator.is_type(instance, "object"):
        return
    properties = schema.get("properties", {})
    try:
        patterns = [compile(p) for p in schema.get("patternProperties", {})]
    except PatternError as exc:
        yield ValidationError(str(exc))
        return
    extras = [key for key in instance if key not in properties
              and not any(p.search(key) for p in patterns)]
    if validator.is_type(additional, "object"):
        for extra in extras:
            yield from validator.descend(instance[extra], additional, path=extra)
    elif not additional and extras:
        yield ValidationError("additional properties are not allowed ("
                              + ", ".join(repr(e) for e in sorted(extras)) + " unexpected)")


#: Draft 2020-12 whose ``pattern`` and ``patternProperties`` run on RE2 (linear time,
#: ``$`` only at the end). Every schema applied to untrusted values uses it.
LinearValidator = jsonschema.validators.extend(
    Draft202012Validator, {"pattern": _pattern, "patternProperties": _pattern_properties,
                           "additionalProperties": _additional_properties})
