"""The SDK's exceptions.

Every error a gear author or a tool can meet derives from :class:`GearsError`,
carries a stable ``code`` and a message that says what to do about it. The CLI
catches :class:`GearsError` once, at the top, and prints the message without a
traceback.
"""

from __future__ import annotations

from dataclasses import dataclass


class GearsError(Exception):
    """Base class of every error the SDK raises on purpose."""

    code = "gears_error"

    def __init__(self, message: str, *, code: str | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input, and where: ``path`` is a JSON path like
    ``$.permissions.network[0]`` (or a file path for archive members)."""

    path: str
    message: str
    code: str = "invalid"

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"

    def to_dict(self) -> ProblemDetail:
        return {"path": self.path, "message": self.message, "code": self.code}


#: A :class:`Problem` on the wire (an API error's ``details``, a form's errors):
#: ``{"path", "message", "code"}``. The one spelling of that shape.
ProblemDetail = dict[str, str]


def problem(path: str, message: str, code: str = "invalid") -> ProblemDetail:
    """The wire form of ``Problem(path, message, code)``."""
    return Problem(path, message, code).to_dict()


class ManifestError(GearsError):
    """A manifest failed validation; ``problems`` lists every finding."""

    code = "invalid_manifest"

    def __init__(self, problems: list[Problem], source: str = "gear.json"):
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        n = len(self.problems)
        super().__init__(f"{source} has {n} problem{'s' if n != 1 else ''}:\n{lines}")


class RangeError(GearsError):
    """A version range could not be parsed."""

    code = "invalid_range"


class ArchiveError(GearsError):
    """A ``.gear`` archive was refused; ``code`` is the stable reason code."""

    code = "invalid_archive"

    def __init__(self, code: str, message: str, *, member: str | None = None):
        super().__init__(message, code=code)
        self.member = member


class HookError(GearsError):
    """A gear's hooks do not match its manifest, or a hook call failed."""

    code = "hook_mismatch"
