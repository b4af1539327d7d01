"""Where the registry's settings come from.

Settings are layered, each layer overriding the one before:

1. built-in defaults (a SQLite ``registry.db`` and a ``blobs/`` directory in
   the current working directory, so ``make run`` needs no configuration);
2. the instance config file, ``instance/gears.toml`` (or the file named by
   ``GEARS_CONFIG``), whose top-level keys are the setting names in any case;
3. ``GEARS_``-prefixed environment variables (the contract scripts rely on);
4. the mapping passed to :func:`~marketplace.create_app` (tests).

The result lands in ``app.config`` under plain names (``DATABASE_URL``,
``STORAGE_URL``, ``S3_ENDPOINT_URL``, ``S3_REGION``, ``SECRET_KEY``,
``MAX_CONTENT_LENGTH``, ``BASE_URL``, ``TESTING``). The app and the operator
CLI both resolve settings through :func:`load_settings`, so they always agree.
"""

from __future__ import annotations

import os
import secrets
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from marketplace.errors import MarketplaceError

#: Settings read from ``GEARS_<NAME>`` environment variables, with their parsers.
ENV_SETTINGS: dict[str, Callable[[str], Any]] = {
    "DATABASE_URL": str,
    "STORAGE_URL": str,
    "S3_ENDPOINT_URL": str,
    "S3_REGION": str,
    "SECRET_KEY": str,
    "MAX_UPLOAD_MB": int,
    "BASE_URL": str,
    "S3_CONNECT_TIMEOUT": float,
    "S3_READ_TIMEOUT": float,
    "S3_MAX_ATTEMPTS": int,
    "STORAGE_BREAKER_FAILURES": int,
    "STORAGE_BREAKER_SECONDS": float,
    # Earlier secret keys, comma-separated: still accepted for decryption after a rotation.
    "SECRET_KEY_FALLBACKS": lambda value: [k.strip() for k in value.split(",") if k.strip()],
    # Proxy hops in front of the server whose X-Forwarded-For/-Proto are believed (0: none).
    "TRUSTED_PROXIES": int,
    "TOKEN_FAILURE_LIMIT": int,
    "TOKEN_FAILURE_WINDOW": float,
    "LOGIN_ACCOUNT_FAILURE_LIMIT": int,
    # Where installations' data dirs (and their filesystem images) live; default
    # <instance>/engine/data. Point it at a volume of its own.
    "GEAR_DATA_PATH": str,
}

SECRET_KEY_FILE = "secret_key"  # noqa: S105 (a file name)
CONFIG_FILE = "gears.toml"


class ConfigError(MarketplaceError):
    """A setting that cannot be used; the message names the setting and the fix."""

    def __init__(self, message: str) -> None:
        super().__init__(500, "config_error", message)


def defaults(cwd: Path) -> dict[str, Any]:
    """The built-in settings: everything local, under the working directory."""
    return {
        "DATABASE_URL": "sqlite:///registry.db",
        "STORAGE_URL": f"file://{cwd / 'blobs'}",
        "S3_ENDPOINT_URL": None,
        "S3_REGION": None,
        "SECRET_KEY": None,
        "MAX_UPLOAD_MB": 16,
        "BASE_URL": None,
        # Storage calls fail in seconds, and a store that keeps failing is skipped
        # (fails fast) for a while: see marketplace.storage.breaker.
        "S3_CONNECT_TIMEOUT": 2.0,
        "S3_READ_TIMEOUT": 10.0,
        "S3_MAX_ATTEMPTS": 2,
        "STORAGE_BREAKER_FAILURES": 3,
        "STORAGE_BREAKER_SECONDS": 30.0,
        "TESTING": False,
        "TRUSTED_PROXIES": 0,
        "TOKEN_FAILURE_LIMIT": 30,
        "TOKEN_FAILURE_WINDOW": 300.0,
        "LOGIN_ACCOUNT_FAILURE_LIMIT": 20,
        "GEAR_DATA_PATH": None,
    }


def instance_path(overrides: Mapping[str, Any] | None = None,
                  environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> Path:
    """The instance directory (config file, generated secret key): ``./instance``
    unless ``INSTANCE_PATH`` is passed or ``GEARS_INSTANCE_PATH`` is set."""
    environ = os.environ if environ is None else environ
    cwd = cwd or Path.cwd()
    chosen = (overrides or {}).get("INSTANCE_PATH") or environ.get("GEARS_INSTANCE_PATH")
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
    """The ``GEARS_*`` settings that are set (and not empty)."""
    found: dict[str, Any] = {}
    for name, parse in ENV_SETTINGS.items():
        raw = environ.get(f"GEARS_{name}")
        if raw is None or raw == "":
            continue
        try:
            found[name] = parse(raw)
        except ValueError:
            raise ConfigError(f"GEARS_{name}={raw!r} is not a valid {parse.__name__}") from None
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
    path = instance / SECRET_KEY_FILE
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
    config_file = environ.get("GEARS_CONFIG")
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
    try:
        settings["TRUSTED_PROXIES"] = max(0, int(settings["TRUSTED_PROXIES"]))
    except (TypeError, ValueError):
        raise ConfigError(f"TRUSTED_PROXIES={settings['TRUSTED_PROXIES']!r} is not a number "
                          "of proxy hops") from None
    if settings.get("BASE_URL"):
        settings["BASE_URL"] = str(settings["BASE_URL"]).rstrip("/")
    return settings
