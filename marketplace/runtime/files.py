"""A gear's files, handled without walking them in the engine's Python stack.

A gear controls what lies in its data dir: 1,100 nested directories make a
recursive walk in Python (``Path.rglob``, ``shutil.rmtree`` before 3.12) raise
``RecursionError`` on the host, and a hundred thousand files make it slow. So
the host never walks a gear's tree itself: :func:`remove_tree` and
:func:`chown_tree` hand it to ``rm`` and ``chown`` (iterative, any depth) in a
child process with a deadline, and report any failure as :class:`TreeError`,
which the runtime attributes to the installation.

Every other piece of the runtime that removes a gear's files (uninstall, a
runtime's scratch dir, a data dir on a tmpfs) goes through :func:`remove_tree`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

#: Default time budget for removing or re-owning one gear's tree.
TREE_DEADLINE_S = 30.0


class TreeError(OSError):
    """A gear's tree could not be removed or re-owned in time."""


def _tool(name: str) -> str:
    path = shutil.which(name, path="/usr/bin:/bin")
    if path is None:
        raise TreeError(f"{name} is not installed (looked in /usr/bin and /bin)")
    return path


def _run(argv: list[str], deadline: float, what: str) -> None:
    budget = deadline - time.monotonic()
    if budget <= 0:
        raise TreeError(f"no time left to {what}")
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, timeout=budget, check=False,
                              env={"LC_ALL": "C"})
    except subprocess.TimeoutExpired:
        raise TreeError(f"could not {what} within {budget:.1f} s") from None
    if done.returncode != 0:
        reason = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
        raise TreeError(f"could not {what}: {reason[0][:500]}")


def remove_tree(path: str | Path, deadline: float | None = None) -> None:
    """Remove ``path`` and everything under it before ``deadline`` (``time.monotonic()``).

    Symlinks are removed, never followed; mounts under ``path`` are not crossed.
    A missing ``path`` is not an error.
    """
    path = Path(path)
    if not os.path.lexists(path):
        return
    deadline = deadline if deadline is not None else time.monotonic() + TREE_DEADLINE_S
    _run([_tool("rm"), "-rf", "--one-file-system", "--", str(path)], deadline,
         f"remove {path.name}")
    if os.path.lexists(path):
        raise TreeError(f"{path.name} is still there after rm -rf")


def chown_tree(path: str | Path, uid: int, deadline: float | None = None) -> None:
    """Make ``uid`` own ``path`` and everything under it (symlinks themselves, not
    their targets), before ``deadline``."""
    deadline = deadline if deadline is not None else time.monotonic() + TREE_DEADLINE_S
    _run([_tool("chown"), "-R", "--no-dereference", f"{uid}:{uid}", "--", str(path)],
         deadline, f"give the data dir to uid {uid}")


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs. A zombie (exited, not yet reaped) is dead:
    ``kill(pid, 0)`` alone would call it alive, and leave what it owned unswept."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc to ask: trust the signal check
    return stat.rpartition(")")[2].split()[:1] != ["Z"]
