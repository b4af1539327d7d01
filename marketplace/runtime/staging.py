"""Read-only copies of what a plain-process worker reads, where its uid can reach them.

At ``standard`` and ``dev-unsafe`` a worker is a plain child process, and when
the engine is root it runs under the installation's dedicated uid, which
owns nothing on the host. The interpreter, the SDK and the gear's code often
live where such a uid cannot even traverse (``/root/.pyenv``, a 0700 cache);
bubblewrap (``strict``) bind-mounts them, but a plain process has no mount
namespace. So the runtime *stages* them beneath its own directory, which it
makes traversable:

- directories are created mode 0555 and files are hard links (same file
  system, the source neither group/other-writable nor set-id) or copies
  mode 0444 (0555 when executable), all owned by the engine, so the worker
  can read and run them but change none of them (it is not their owner, and
  seccomp refuses every metadata change anyway);
- only regular files, directories and same-directory symlinks are staged:
  a staged tree never points back into the host;
- the interpreter is staged without ``site-packages``, the test suite and
  the GUI/packaging modules; when its ``libpython`` is found through an
  absolute ``RUNPATH`` into the unreachable prefix, ``LD_LIBRARY_PATH``
  points the loader at the staged copy.

Trees are built under a temporary name and renamed into place, so a
half-staged tree is never used; walking is iterative, so no depth of a
gear's directories can exhaust the host's Python stack.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import sys
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from marketplace.runtime.errors import SandboxError

#: Parts of the interpreter's library a worker never imports.
_STDLIB_SKIP = frozenset({"site-packages", "dist-packages", "test", "idlelib", "tkinter",
                          "turtledemo", "ensurepip", "lib2to3", "__phello__"})
_UNSAFE_TO_LINK = stat.S_IWGRP | stat.S_IWOTH | stat.S_ISUID | stat.S_ISGID


@dataclass(frozen=True)
class StagedInterpreter:
    """The staged interpreter: binary, prefix, and environment the loader needs."""

    python: str
    prefix: str
    env: dict[str, str] = field(default_factory=dict)


def reachable_by_others(path: str | Path) -> bool:
    """Whether every directory from ``/`` down to ``path`` lets other uids through (o+x)."""
    p = Path(path).resolve()
    for parent in [*reversed(p.parents), p]:
        try:
            mode = parent.stat().st_mode
        except OSError:
            return False
        if stat.S_ISDIR(mode) and not mode & stat.S_IXOTH:
            return False
    return True


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def _place_file(src: str, dest: str, st: os.stat_result) -> None:
    if not st.st_mode & _UNSAFE_TO_LINK and st.st_mode & stat.S_IROTH:
        try:
            os.link(src, dest, follow_symlinks=False)
            return
        except OSError:
            pass  # another file system, or linking refused: copy instead
    shutil.copyfile(src, dest, follow_symlinks=False)
    os.chmod(dest, 0o555 if st.st_mode & stat.S_IXUSR else 0o444)


def _place_symlink(src: str, dest: str) -> None:
    target = os.readlink(src)
    if "/" not in target and target not in (".", ".."):
        os.symlink(target, dest)


def copy_tree(src: str | Path, dest: str | Path, *, skip: frozenset[str] = frozenset(),
              skip_prefixes: tuple[str, ...] = ()) -> None:
    """Stage ``src`` at ``dest`` (which must not exist), iteratively, read-only."""
    stack = [(str(src), str(dest))]
    while stack:
        s, d = stack.pop()
        os.mkdir(d)
        with os.scandir(s) as entries:
            for entry in entries:
                if entry.name in skip or entry.name.startswith(skip_prefixes or ("\0",)):
                    continue
                target = os.path.join(d, entry.name)
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    stack.append((entry.path, target))
                elif stat.S_ISREG(st.st_mode):
                    _place_file(entry.path, target, st)
                elif stat.S_ISLNK(st.st_mode):
                    _place_symlink(entry.path, target)
        os.chmod(d, 0o555)  # noqa: S103 (read-only / traverse-only)


class Stage:
    """The staged trees of one runtime, beneath ``root`` (built once, reused)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self._lock = threading.Lock()

    def check_reachable(self) -> None:
        """Refuse (with the reason) when a dedicated uid could not reach the stage."""
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o711)  # noqa: S103 (read-only / traverse-only)
        if not reachable_by_others(self.root):
            raise SandboxError(
                f"workers cannot run under a dedicated uid: {self.root} is not reachable by "
                "other uids (a directory above it lacks o+x), so the interpreter, SDK and gear "
                "cannot be staged there; refusing rather than running the worker as root",
                code="sandbox_uid_unavailable",
                hint="give the runtime a root_dir whose parents are traversable (mode o+x)")

    def _build(self, name: str, build: object) -> Path:
        """``root/name``, built by ``build(tmp_path)`` under a temporary name if missing."""
        final = self.root / name
        with self._lock:
            if not final.exists():
                self.check_reachable()
                tmp = final.parent / f".{final.name}.{uuid.uuid4().hex}"
                try:
                    build(tmp)  # type: ignore[operator]
                    os.rename(tmp, final)
                finally:
                    if tmp.exists():
                        shutil.rmtree(tmp, ignore_errors=True)
        return final

    def interpreter(self, python: str, prefix: str) -> StagedInterpreter:
        """The interpreter ``python`` (living in ``prefix``) with its standard library."""
        version = f"python{sys.version_info[0]}.{sys.version_info[1]}"

        def build(tmp: Path) -> None:
            os.mkdir(tmp, 0o555)
            for sub in ("bin", "lib"):
                os.mkdir(tmp / sub)
            _place_file(python, str(tmp / "bin" / version), os.stat(python))
            lib = Path(prefix, "lib")
            for entry in os.scandir(lib):
                if entry.name.startswith("libpython") and ".so" in entry.name:
                    if entry.is_symlink():
                        _place_symlink(entry.path, str(tmp / "lib" / entry.name))
                    elif entry.is_file():
                        _place_file(entry.path, str(tmp / "lib" / entry.name), entry.stat())
            copy_tree(lib / version, tmp / "lib" / version, skip=_STDLIB_SKIP,
                      skip_prefixes=("config-",))
            for sub in ("bin", "lib", ""):
                os.chmod(tmp / sub, 0o555)  # noqa: S103 (read-only / traverse-only)

        staged = self._build(f"python-{_digest(python, prefix, sys.version)}", build)
        env = {}
        if any(p.name.startswith("libpython") for p in (staged / "lib").iterdir()):
            env["LD_LIBRARY_PATH"] = str(staged / "lib")
        return StagedInterpreter(str(staged / "bin" / version), str(staged), env)

    def packages(self, packages: dict[str, str]) -> str:
        """A directory holding copies of only ``packages`` (name → source directory)."""

        def build(tmp: Path) -> None:
            os.mkdir(tmp)
            for name, src in sorted(packages.items()):
                copy_tree(src, tmp / name)
            os.chmod(tmp, 0o555)  # noqa: S103 (read-only / traverse-only)

        key = _digest(*(f"{k}={v}" for k, v in sorted(packages.items())))
        return str(self._build(f"lib-{key}", build))

    def gear(self, installation: str, gear_dir: str | Path) -> str:
        """The gear's code, staged for ``installation``."""
        src = str(Path(gear_dir).resolve())
        gears = self.root / "gears"
        with self._lock:
            gears.mkdir(exist_ok=True)
            os.chmod(gears, 0o711)  # noqa: S103 (read-only / traverse-only)
        return str(self._build(f"gears/{_digest(installation, src)}",
                               lambda tmp: copy_tree(src, tmp)))
