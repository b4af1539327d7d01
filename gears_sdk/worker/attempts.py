"""Counting what a gear *tried*: an audit hook in every worker.

The sandbox refuses processes, sockets, native code and files outside the
gear, and a gear may catch the ``PermissionError`` and carry on as if
nothing happened. The host must still learn of the attempt (vetting reports
it with counts; the runtime could alert on it), so the worker installs a
:func:`sys.addaudithook` hook before it imports the gear, and every answer
it sends carries the counts since the previous answer (``"attempts"``).

The hook is always installed, in every worker, whatever the host does with
the counts: a gear cannot tell a vetting run from a workspace by its
presence. It is cheap (one dict lookup per audit event) and never raises,
so it changes nothing the gear observes; once added, no code in the process
can remove it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any

#: Audit event → what the attempt was (the categories the host reports).
EVENTS: dict[str, str] = {
    **dict.fromkeys(("subprocess.Popen", "os.system", "os.exec", "os.spawn", "os.posix_spawn",
                     "os.fork", "os.forkpty", "pty.spawn", "os.kill", "os.killpg"),
                    "process"),
    **dict.fromkeys(("socket.__new__", "socket.connect", "socket.bind", "socket.sendto",
                     "socket.sendmsg", "socket.getaddrinfo", "socket.gethostbyname"),
                    "socket"),
    **dict.fromkeys(("ctypes.dlopen", "ctypes.dlsym", "ctypes.call_function",
                     "ctypes.addressof", "ctypes.cdata"), "native"),
    # changes outside the gear's own files (the path is checked like an open's)
    **dict.fromkeys(("os.chmod", "os.chown", "os.remove", "os.rename", "os.rmdir",
                     "os.mkdir", "os.link", "os.symlink", "os.truncate", "shutil.rmtree"),
                    "file_change"),
    **dict.fromkeys(("os.putenv", "os.unsetenv"), "environment"),
}
CATEGORIES = frozenset(EVENTS.values()) | {"open_outside"}
MAX_COUNT = 1_000_000


class Attempts:
    """Counts attempts by category; :meth:`take` returns and resets them."""

    def __init__(self, allowed_roots: Iterable[str]):
        self.counts: dict[str, int] = {}
        roots = [r for r in allowed_roots if r]
        # both spellings of each root: paths are judged lexically (see _outside)
        self.roots = tuple(dict.fromkeys(
            os.path.join(f(r), "") for r in roots for f in (os.path.realpath, _lexical)))

    def hook(self, event: str, args: tuple[Any, ...]) -> None:
        try:
            what = EVENTS.get(event)
            if what == "file_change" and args:
                what = "file_change" if self._outside(args[0]) else None
            elif what is None and event == "open" and args:
                what = "open_outside" if self._outside(args[0]) else None
            if what is not None:
                self.counts[what] = min(self.counts.get(what, 0) + 1, MAX_COUNT)
        except BaseException:  # noqa: S110 (an audit hook must never change what the gear sees)
            pass

    def _outside(self, path: Any) -> bool:
        """Whether ``path`` is outside the gear, its data dir and Python's own paths."""
        if isinstance(path, bytes):
            path = path.decode("utf-8", "replace")
        if not isinstance(path, str) or not path:
            return False  # a file descriptor, or nothing to judge
        # lexical, never realpath(): resolving would cost a syscall per path component
        # on every event, so a deep tree would turn the gear's own file work quadratic.
        # The sandbox enforces; this only counts, and a symlink trick only hides an
        # attempt that Landlock refuses anyway.
        return not os.path.join(_lexical(os.path.dirname(path)), "").startswith(self.roots)

    def take(self) -> dict[str, int]:
        counts, self.counts = self.counts, {}
        return counts


def _lexical(path: str) -> str:
    return os.path.normpath(os.path.abspath(path))


def install(gear_path: str, data_dir: str | None = None) -> Attempts:
    """Add the hook for a worker running the gear at ``gear_path``: opens under the gear,
    its data dir, ``TMPDIR`` and Python's own paths are not counted."""
    # never tempfile.gettempdir(): it probes directories by writing into them
    roots = [gear_path, data_dir or "", os.environ.get("TMPDIR", ""), sys.prefix,
             sys.base_prefix, sys.exec_prefix, *[p for p in sys.path if p]]
    attempts = Attempts(roots)
    sys.addaudithook(attempts.hook)
    return attempts
