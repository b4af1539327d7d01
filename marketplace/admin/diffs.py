"""What changed since the last approved version: files (unified diffs) and capabilities.

Reviewers approve code, not descriptions, so the review page shows every
added, removed and modified file, with a unified diff for text; a first
version is diffed against nothing, which shows its whole source. Diffs are
capped (:data:`MAX_LINES_PER_FILE`, :data:`MAX_TOTAL_LINES`) so a huge
upload cannot make the page unusable; a capped diff says so.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from gears_sdk.archive import GearArchive
from marketplace.workspaces.capabilities import capability_diff, described

MAX_LINES_PER_FILE = 400
MAX_TOTAL_LINES = 4000


@dataclass
class FileChange:
    path: str
    status: str  # added | removed | modified
    lines: list[str] = field(default_factory=list)
    binary: bool = False
    truncated: bool = False

    @property
    def counts(self) -> tuple[int, int]:
        plus = sum(1 for ln in self.lines if ln.startswith("+") and not ln.startswith("+++"))
        minus = sum(1 for ln in self.lines if ln.startswith("-") and not ln.startswith("---"))
        return plus, minus


def _text(archive: GearArchive | None, name: str) -> list[str] | None:
    if archive is None or name not in archive.names:
        return []
    try:
        return archive.read(name).decode("utf-8").splitlines()
    except UnicodeDecodeError:
        return None


def file_changes(old: GearArchive | None, new: GearArchive) -> list[FileChange]:
    """Every file that differs, sorted by path; unchanged files are left out."""
    old_hashes = old.file_hashes() if old else {}
    new_hashes = new.file_hashes()
    budget = MAX_TOTAL_LINES
    out: list[FileChange] = []
    for path in sorted(old_hashes.keys() | new_hashes.keys()):
        if old_hashes.get(path) == new_hashes.get(path):
            continue
        status = ("added" if path not in old_hashes else
                  "removed" if path not in new_hashes else "modified")
        change = FileChange(path, status)
        before, after = _text(old, path), _text(new if path in new_hashes else None, path)
        if before is None or after is None:
            change.binary = True
        else:
            lines = list(difflib.unified_diff(before, after, f"a/{path}", f"b/{path}",
                                              lineterm="", n=3))
            cap = min(MAX_LINES_PER_FILE, max(budget, 0))
            change.truncated = len(lines) > cap
            change.lines = lines[:cap]
            budget -= len(change.lines)
        out.append(change)
    return out


def capabilities(old_manifest: dict[str, Any] | None, new_manifest: dict[str, Any]
                 ) -> dict[str, list[dict[str, str]]]:
    """``{"added"|"removed"|"unchanged": [{capability, description}]}``."""
    diff = capability_diff(old_manifest, new_manifest)
    return {"added": described(diff.added), "removed": described(diff.removed),
            "unchanged": described(diff.unchanged)}
