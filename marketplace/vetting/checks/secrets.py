"""Secrets committed in the gear: cloud keys, private keys, API tokens, high-entropy strings.

A secret in a published archive is public to every admin and, once
approved, to everyone who downloads it, so it is reported whatever file it
is in. Specific formats (AWS key ids, PEM private keys, known token
prefixes) are matched exactly; the generic rule needs both a telling name
(``api_key``, ``secret``, ``token``, ``password``…) and a value random
enough (Shannon entropy ≥ :data:`MIN_ENTROPY` bits per character) to keep
placeholders and prose out.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable

from gears_sdk.patterns import Pattern
from gears_sdk.patterns import compile as linear
from marketplace.vetting.context import VetContext
from marketplace.vetting.findings import Finding, finding

MIN_ENTROPY = 3.5
MIN_GENERIC_LENGTH = 16

PATTERNS: tuple[tuple[str, Pattern, str], ...] = (
    ("secret_aws_key", linear(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), "an AWS access key id"),
    ("secret_private_key",
     linear(r"-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY-----"),
     "a private key"),
    ("secret_token", linear(r"\bgears_[A-Za-z0-9_-]{30,}"), "a Gears API token"),
    ("secret_token", linear(r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36}\b"),
     "a GitHub token"),
    ("secret_token", linear(r"\bgithub_pat_[A-Za-z0-9_]{40,}"), "a GitHub token"),
    ("secret_token", linear(r"\b[sr]k_live_[0-9A-Za-z]{16,}"), "a Stripe live key"),
    ("secret_token", linear(r"\bxox[abposr]-[0-9A-Za-z-]{10,}"), "a Slack token"),
    ("secret_token", linear(r"\bAIza[0-9A-Za-z_-]{35}\b"), "a Google API key"),
)
GENERIC = linear(
    r"(?i)([a-z0-9_.-]*(?:api[_-]?key|secret|token|passw(?:or)?d|access[_-]?key|auth)"
    r"[a-z0-9_]*)[\"']?\s*[:=]\s*[rbu]?[\"']([^\"'\s]{" + str(MIN_GENERIC_LENGTH) + r",})[\"']")
PLACEHOLDER = linear(r"(?i)x{4,}|example|changeme|your[_-]|<|>|\{|\}|\*{3,}|\.\.\.|test")


def entropy(text: str) -> float:
    """Shannon entropy of ``text`` in bits per character."""
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def scan_text(text: str) -> list[tuple[str, int, str]]:
    """``(code, line, what)`` for every secret-looking string in ``text``."""
    hits: list[tuple[str, int, str]] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        matched = False
        for code, pattern, what in PATTERNS:
            if pattern.search(line):
                hits.append((code, lineno, what))
                matched = True
        if matched:
            continue
        for m in GENERIC.finditer(line):
            value = m.group(2)
            if not PLACEHOLDER.search(value) and entropy(value) >= MIN_ENTROPY:
                hits.append(("secret_generic", lineno,
                             f"a random-looking value assigned to {m.group(1)!r}"))
    return hits


def check_secrets(ctx: VetContext) -> Iterable[Finding]:
    out: list[Finding] = []
    for name in ctx.archive.names:  # every text file: keys hide in .pem, .env, data files
        text = ctx.text(name)
        if text is None:
            continue
        for code, line, what in scan_text(text):
            out.append(finding(code, f"{what} is committed in the gear; remove it, revoke it, "
                               "and read it from ctx.secrets instead", file=name, line=line))
    return out
