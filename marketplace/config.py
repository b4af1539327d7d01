"""Where the registry's settings come from.

Settings are layered, each layer overriding the one before:

1. built-in defaults (a SQLite ``registry.db`` and a ``blobs/`` directory in
   the current working directory, so ``make run`` needs no configuration);
2. the instance config file, ``instance/gears.toml`` (or the file named by
   ``GEARS_CONFIG``), whose top-level keys are the setting names in any case;
3. ``GEARS_``-prefixed environment variables (the contract scripts rely on);
4. the mapping passed to :func:`~marketplace.create_app` (tests).

The result lands in ``app.config`` under the names of the settings table,
:data:`marketplace.settings.SETTINGS` (plus ``MAX_CONTENT_LENGTH``,
``INSTANCE_PATH`` and ``TESTING``), so code reads ``app.config[NAME]`` and never
needs a default of its own. The app and the operator
CLI both resolve settings through :func:`load_settings`, so they always agree.
"""

from __future__ import annotations

import copy
import os
import secrets
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from marketplace import settings as settings_table
from marketplace.settings import SETTINGS, ConfigError

__all__ = ["ConfigError", "load_settings", "defaults", "instance_path", "read_environ"]

#: Settings that say where the others come from; read before the layers, not layered.
BOOTSTRAP = frozenset({"CONFIG", "INSTANCE_PATH"})

SECRET_KEY_FILE = "secret_key"  # noqa: S105 (a file name)
ENGINE_NODE_TOKEN_FILE = "engine-node.token"  # noqa: S105 (a file name)
CONFIG_FILE = "gears.toml"


def defaults(cwd: Path) -> dict[str, Any]:
    """The built-in settings, from :data:`marketplace.settings.SETTINGS`: everything
    local, under the working directory."""
    values = {s.name: copy.copy(s.default) for s in SETTINGS if s.name not in BOOTSTRAP}
    values["STORAGE_URL"] = f"file://{cwd / 'blobs'}"
    values["TESTING"] = False
    return values


def instance_path(overrides: Mapping[str, Any] | None = None,
                  environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> Path:
    """The instance directory (config file, generated secret key): ``./instance``
    unless ``INSTANCE_PATH`` is passed or ``GEARS_INSTANCE_PATH`` is set."""
    environ = os.environ if environ is None else environ
    cwd = cwd or Path.cwd()
    chosen = ((overrides or {}).get("INSTANCE_PATH")
              or settings_table.from_environ("INSTANCE_PATH", environ))
    return Path(chosen).resolve() if chosen else cwd / "instance"


def read_config_file(path: Path) -> dict[str, Any]:
    """Top-level keys of a TOML file, upper-cased to setting names."""
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"cannot read the config file {path}: {exc}") from None
    return {key.upper(): value for key, value in data.items() if not isinstance(value, dict)}


def read_environ(environ: Mapping[str, str]) -> dict[str, Any]:
    """The ``GEARS_*`` settings that are set (and not empty), parsed by the table."""
    found = settings_table.read_environ(environ)
    for name in BOOTSTRAP:
        found.pop(name, None)
    return found


def absolute_sqlite_url(url: str, cwd: Path) -> str:
    """Anchor a relative SQLite path to ``cwd`` so that every process (CLI,
    server workers) opens the same file whatever directory it later runs in."""
    try:
        parsed = make_url(url)
    except Exception:
        raise ConfigError(f"DATABASE_URL {url!r} is not a database URL") from None
    if parsed.get_backend_name() != "sqlite":
        return url
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return url
    if Path(database).is_absolute():
        return url
    return parsed.set(database=str(cwd / database)).render_as_string(hide_password=False)


def secret_key(instance: Path) -> str:
    """The persisted secret key, generated on first use.

    Sessions and CSRF tokens must survive restarts and be shared by every
    worker, so a generated key is written to ``instance/secret_key`` (mode
    0600) rather than kept in memory.
    """
    return persisted_secret(instance, SECRET_KEY_FILE)


def engine_node_token(instance: Path) -> str:
    """The shared secret of engine nodes and the processes calling them, generated into
    ``instance/engine-node.token`` (0600) on first use, so every process started on the
    same instance directory (``marketplace serve`` and what it starts) agrees."""
    return persisted_secret(instance, ENGINE_NODE_TOKEN_FILE)


def persisted_secret(instance: Path, name: str) -> str:
    """The secret in ``instance/<name>``, written there (mode 0600) if absent or empty."""
    path = instance / name
    if path.exists():
        key = path.read_text().strip()
        if key:
            return key
    instance.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    # O_EXCL: when two processes race, the loser reads the winner's key.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
    return key


def load_settings(overrides: Mapping[str, Any] | None = None, *,
                  environ: Mapping[str, str] | None = None,
                  cwd: Path | None = None) -> dict[str, Any]:
    """Resolve every setting through the four layers described in the module docstring."""
    environ = os.environ if environ is None else environ
    cwd = cwd or Path.cwd()
    overrides = dict(overrides or {})
    instance = instance_path(overrides, environ, cwd)

    settings = defaults(cwd)
    config_file = settings_table.from_environ("CONFIG", environ)
    if config_file:
        path = Path(config_file)
        if not path.is_file():
            raise ConfigError(f"GEARS_CONFIG names {path}, which is not a file")
        settings.update(read_config_file(path))
    elif (instance / CONFIG_FILE).is_file():
        settings.update(read_config_file(instance / CONFIG_FILE))
    settings.update(read_environ(environ))
    settings.update(overrides)

    settings["INSTANCE_PATH"] = str(instance)
    settings["DATABASE_URL"] = absolute_sqlite_url(str(settings["DATABASE_URL"]), cwd)
    if "MAX_CONTENT_LENGTH" not in overrides:
        try:
            settings["MAX_CONTENT_LENGTH"] = int(settings["MAX_UPLOAD_MB"]) * 1024 * 1024
        except (TypeError, ValueError):
            raise ConfigError(f"MAX_UPLOAD_MB={settings['MAX_UPLOAD_MB']!r} is not a number")
    if not settings.get("SECRET_KEY"):
        settings["SECRET_KEY"] = secret_key(instance)
    if not settings.get("ENGINE_NODE_TOKEN"):
        settings["ENGINE_NODE_TOKEN"] = engine_node_token(instance)
    urls = settings.get("ENGINE_URLS") or []
    # A config file or a caller may give a string or a list; each URL is checked once, here.
    settings["ENGINE_URLS"] = settings_table.parse(
        settings_table.BY_NAME["ENGINE_URLS"],
        urls if isinstance(urls, str) else ",".join(str(u) for u in urls))
    try:
        settings["TRUSTED_PROXIES"] = max(0, int(settings["TRUSTED_PROXIES"]))
    except (TypeError, ValueError):
        raise ConfigError(f"TRUSTED_PROXIES={settings['TRUSTED_PROXIES']!r} is not a number "
                          "of proxy hops") from None
    if settings.get("BASE_URL"):
        settings["BASE_URL"] = str(settings["BASE_URL"]).rstrip("/")
    return settings
