"""Work with a gear's source directory: find it, import its entrypoint, check it.

Both ``gears validate`` and :mod:`gears_sdk.testing` load a gear's code into
the current process. They must not leave it behind: two gears may ship a
module of the same name, and a test session loads many gears. So the
entrypoint is imported with the gear directory on ``sys.path`` only for the
duration of the import, and every module that import added is removed from
``sys.modules`` afterwards; the returned module object keeps working because
it holds its own references.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from gears_sdk.errors import GearsError, HookError
from gears_sdk.hookspecs import check_hooks
from gears_sdk.manifest import MANIFEST_NAME, Manifest, load_manifest


def find_gear_dir(start: str | Path) -> Path | None:
    """The nearest directory at or above ``start`` holding a ``gear.json``."""
    here = Path(start).resolve()
    if here.is_file():
        here = here.parent
    for candidate in (here, *here.parents):
        if (candidate / MANIFEST_NAME).is_file():
            return candidate
    return None


def _module_file(gear_dir: Path, entrypoint: str) -> tuple[Path, bool]:
    """Where ``entrypoint`` lives in ``gear_dir``, and whether it is a package."""
    base = gear_dir.joinpath(*entrypoint.split("."))
    if (base / "__init__.py").is_file():
        return base / "__init__.py", True
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py"), False
    raise GearsError(
        f"the entrypoint module {entrypoint!r} was not found in {gear_dir}",
        code="entrypoint_missing",
        hint=f"create {base.relative_to(gear_dir)}/__init__.py or "
        f"{base.relative_to(gear_dir)}.py, or fix 'entrypoint' in gear.json",
    )


def import_entrypoint(gear_dir: str | Path, entrypoint: str) -> ModuleType:
    """Import ``entrypoint`` from ``gear_dir`` without leaving traces behind.

    Raises :class:`GearsError` when the module is missing or fails to import
    (the message names the exception the module raised).
    """
    gear_dir = Path(gear_dir).resolve()
    _module_file(gear_dir, entrypoint)  # a clear error before touching sys.path
    before = set(sys.modules)
    saved = {k: m for k, m in sys.modules.items() if _is_under(k, entrypoint)}
    for key in saved:
        del sys.modules[key]
    sys.path.insert(0, str(gear_dir))
    importlib.invalidate_caches()
    # validating must not leave __pycache__ directories in the author's source tree
    dont_write, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        module = importlib.import_module(entrypoint)
    except Exception as exc:
        raise GearsError(
            f"importing the entrypoint {entrypoint!r} failed: {type(exc).__name__}: {exc}",
            code="entrypoint_import_failed",
        ) from exc
    finally:
        sys.dont_write_bytecode = dont_write
        try:
            sys.path.remove(str(gear_dir))
        except ValueError:
            pass
        for key in set(sys.modules) - before:
            if _is_under(key, entrypoint) or _lives_in(sys.modules[key], gear_dir):
                del sys.modules[key]
        sys.modules.update(saved)
    return module


def _is_under(module_name: str, entrypoint: str) -> bool:
    top = entrypoint.split(".", 1)[0]
    return module_name == top or module_name.startswith(top + ".")


def _lives_in(module: ModuleType | None, gear_dir: Path) -> bool:
    file = getattr(module, "__file__", None)
    if not file:
        return False
    try:
        return Path(file).resolve().is_relative_to(gear_dir)
    except OSError:
        return False


def check_gear_dir(gear_dir: str | Path) -> tuple[Manifest, ModuleType]:
    """Validate a gear directory the way publishing would, short of building it.

    Checks the manifest (raising :class:`~gears_sdk.errors.ManifestError` with
    every problem), that the readme exists, and that the entrypoint imports
    and implements exactly the declared hooks (:class:`HookError`).
    """
    gear_dir = Path(gear_dir)
    if not gear_dir.is_dir():
        raise GearsError(f"{gear_dir} is not a directory", code="not_a_directory")
    if not (gear_dir / MANIFEST_NAME).is_file():
        raise GearsError(
            f"{gear_dir} has no {MANIFEST_NAME}",
            code="manifest_missing",
            hint="run this in a gear directory, or create one with 'gears new'",
        )
    manifest = load_manifest(gear_dir)
    if not (gear_dir / manifest.readme).is_file():
        raise GearsError(
            f"the readme {manifest.readme!r} named in gear.json does not exist",
            code="readme_missing",
            hint="the catalog shows it as the gear's page; write one",
        )
    module = import_entrypoint(gear_dir, manifest.entrypoint)
    try:
        check_hooks(manifest.kind, manifest.hooks, module)
    except HookError as exc:
        raise HookError(exc.message, hint="make gear.json 'hooks' list exactly the "
                        "functions marked with @hookimpl") from None
    return manifest, module
