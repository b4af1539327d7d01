"""Consent and PII filter.

Two jobs on every event:

1. **Consent.** ``attributes.consent.marketing`` decides the visitor's
   ``traits.consent_status``: ``granted`` (true), ``denied`` (false) or
   ``unknown`` (absent). Unless it is granted, the marketing traits this gear
   manages are removed, on every event, so traits another gear writes back
   later are cleared again.
2. **PII.** Event properties are searched for email addresses, phone numbers
   and payment card numbers (digits passing the Luhn check). The engine
   stores events exactly as they were sent and a gear cannot change a stored
   event, so this gear *flags* them: ``traits.pii_flags`` counts the events
   with each kind of PII, and the log names the property (never the value),
   so the sender can be fixed.
"""

from __future__ import annotations

import re

from gears_sdk import hookimpl
from gears_sdk.types import ProfilePatch

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
CARD = re.compile(r"(?<!\d)\d(?:[ -]?\d){12,18}(?!\d)")
PHONE = re.compile(r"(?<![\w+])\+?\(?\d[\d ().-]{7,}\d(?!\w)")
#: Properties deeper than this, or past this many values, are not searched.
MAX_DEPTH, MAX_VALUES = 5, 500


def luhn_valid(digits):
    """Whether a string of digits passes the Luhn checksum used by payment cards."""
    total = 0
    for i, char in enumerate(reversed(digits)):
        n = int(char) * (2 if i % 2 else 1)
        total += n - 9 if n > 9 else n
    return total % 10 == 0


def find_pii(text):
    """The kinds of PII in ``text``: a subset of {"email", "phone", "card"}."""
    found = set()
    if EMAIL.search(text):
        found.add("email")
        text = EMAIL.sub(" ", text)
    for match in CARD.finditer(text):
        if luhn_valid(re.sub(r"\D", "", match.group())):
            found.add("card")
            text = text.replace(match.group(), " ")
    for match in PHONE.finditer(text):
        candidate = match.group()
        digits = re.sub(r"\D", "", candidate)
        # a separator or a leading + tells a phone number from an order number
        if 10 <= len(digits) <= 15 and (candidate.startswith("+") or digits != candidate):
            found.add("phone")
    return found


def _values(value, path, depth=0):
    """``(path, text)`` for the strings and whole numbers inside a property."""
    if depth > MAX_DEPTH:
        return
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, int) and not isinstance(value, bool):
        yield path, str(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _values(item, f"{path}.{key}", depth + 1)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _values(item, f"{path}[{i}]", depth + 1)


def scan_properties(properties, detect, ignore):
    """``{kind: [property paths]}`` for the PII found in an event's properties."""
    hits = {}
    values = (pv for key, value in properties.items() if key not in ignore
              for pv in _values(value, key))
    for n, (path, text) in enumerate(values):
        if n >= MAX_VALUES:
            break
        for kind in find_pii(text) & detect:
            hits.setdefault(kind, []).append(path)
    return hits


def consent_status(profile):
    """``granted``, ``denied`` or ``unknown``: only a literal ``true`` counts as consent."""
    consent = ((profile.get("attributes") or {}).get("consent") or {}).get("marketing")
    if consent is True:
        return "granted"
    return "denied" if consent is False else "unknown"


@hookimpl
def gear_on_event(event, profile, config, ctx):
    """Apply the visitor's marketing consent and flag PII in the event."""
    patch = ProfilePatch()
    status = consent_status(profile)
    if status != (profile.get("traits") or {}).get("consent_status"):
        patch.set["traits.consent_status"] = status
    if status != "granted":
        patch.unset = [f"traits.{name}" for name in config["managed_traits"]]

    hits = scan_properties(event.get("properties") or {}, set(config["detect"]),
                           set(config["ignore_properties"]))
    if hits:
        patch.increment = {f"traits.pii_flags.{kind}": 1 for kind in sorted(hits)}
        patch.increment["traits.pii_flags.events"] = 1
        where = "; ".join(f"{kind} in {', '.join(paths)}" for kind, paths in sorted(hits.items()))
        ctx.log.warning("event %s (%s) carries personal data: %s", event.get("id"),
                        event.get("type"), where)
    return None if patch.is_empty() else patch
