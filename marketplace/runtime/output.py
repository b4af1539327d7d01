"""A gear's output (stderr, ``print``, ``ctx.log``) as untrusted text for the host's logs.

Two rules, applied where the text crosses into the host (the stderr reader
and the ``log`` message handler in :mod:`marketplace.runtime.worker`):

- **stripped**: terminal control sequences cannot reach an operator's
  terminal or a log viewer. ANSI escape sequences (CSI, OSC, DCS, …) are
  removed whole, then every C0 control except newline and tab, DEL and the
  C1 controls (U+0080 to U+009F).
- **rate-limited per installation**: stderr and ``ctx.log`` share one token
  bucket of bytes and one of lines; what exceeds them is dropped and counted,
  and one line saying how much was dropped is logged when output is admitted
  again. A flooding gear costs the host a bounded amount of log volume
  whatever it does (its CPU is bounded by its control group, and between
  calls it is frozen).
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass

#: ESC-introduced sequences: CSI (ESC [ … final), OSC/DCS/SOS/PM/APC (ESC ] … BEL or ST),
#: and two-character escapes; then the 8-bit CSI/OSC forms.
_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]?"
    r"|\x1b[\]PX^_][^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[ -/]*[0-~]?"
    r"|\x9b[0-?]*[ -/]*[@-~]?"
    r"|[\x9d\x90\x98\x9e\x9f][^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?")
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def strip_controls(text: str) -> str:
    """``text`` without escape sequences or control characters (newline and tab kept)."""
    return _CONTROLS.sub("", _ESCAPES.sub("", text))


@dataclass(frozen=True)
class OutputLimits:
    """How much output one installation may log: sustained rates and bursts."""

    bytes_per_s: int = 16 * 1024
    burst_bytes: int = 64 * 1024
    lines_per_s: int = 50
    burst_lines: int = 200


class OutputLimiter:
    """Token buckets (bytes and lines) shared by an installation's output channels."""

    def __init__(self, limits: OutputLimits | None = None, clock=time.monotonic) -> None:
        self.limits = limits or OutputLimits()
        self._clock = clock
        self._lock = threading.Lock()
        self._bytes = float(self.limits.burst_bytes)
        self._lines = float(self.limits.burst_lines)
        self._last = clock()
        self.dropped_lines = 0
        self.dropped_bytes = 0
        self._unreported = 0

    def admit(self, text: str) -> tuple[bool, int]:
        """Whether one line of ``text`` may be logged now, and how many lines were
        dropped since the last admitted one (to say so in the log)."""
        size = len(text.encode("utf-8", "replace")) + 1
        with self._lock:
            now = self._clock()
            elapsed, self._last = max(0.0, now - self._last), now
            lim = self.limits
            self._bytes = min(lim.burst_bytes, self._bytes + elapsed * lim.bytes_per_s)
            self._lines = min(lim.burst_lines, self._lines + elapsed * lim.lines_per_s)
            if self._lines < 1 or self._bytes < size:
                self.dropped_lines += 1
                self.dropped_bytes += size
                self._unreported += 1
                return False, 0
            self._lines -= 1
            self._bytes -= size
            unreported, self._unreported = self._unreported, 0
            return True, unreported
