"""The one table of the registry's settings, and the one reader of ``GEARS_*``.

Every setting an operator can give is a :class:`Setting` row in :data:`SETTINGS`:
its name (the ``app.config`` key), default, parser, environment variable, scope
and a one-line doc. :mod:`marketplace.config` builds the defaults and the
environment layer from it, ``docs/operations.md``'s settings table is generated
from it (``python -m marketplace.docgen``), and no other module reads a
``GEARS_*`` variable from the environment: code without an app (the runtime,
the operator CLI before it builds one) asks :func:`from_environ` here, so a
value is parsed, and refused with the variable's name, the same way everywhere.
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gears_sdk import ENGINE_VERSION
from gears_sdk import settings as sdk_settings
from gears_sdk.versions import is_valid_version
from marketplace.errors import MarketplaceError

log = logging.getLogger(__name__)

PREFIX = "GEARS_"


class ConfigError(MarketplaceError):
    """A setting that cannot be used; the message names the setting and the fix."""

    def __init__(self, message: str) -> None:
        super().__init__(500, "config_error", message)


# Parsers: each takes the variable's text and raises ValueError saying what it wants.

def text(raw: str) -> str:
    """any text"""
    return raw


def integer(raw: str) -> int:
    """a whole number"""
    return int(raw.strip())


def number(raw: str) -> float:
    """a number"""
    value = float(raw.strip())
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError("not a finite number")
    return value


FALSE = ("0", "false", "no", "off")
TRUE = ("1", "true", "yes", "on")


def flag(raw: str) -> bool:
    """one of 1/true/yes/on or 0/false/no/off"""
    word = raw.strip().lower()
    if word not in FALSE + TRUE:
        raise ValueError("not a yes/no flag")
    return word in TRUE


def names(raw: str) -> list[str]:
    """comma-separated values"""
    return [part.strip() for part in raw.split(",") if part.strip()]


def base_urls(raw: str) -> list[str]:
    """comma-separated `http://` or `https://` base URLs (host and port, no query)"""
    from urllib.parse import urlsplit

    found = []
    for part in names(raw):
        url = urlsplit(part)
        if url.scheme not in ("http", "https") or not url.hostname or url.query or url.fragment:
            raise ValueError(f"{part!r} is not an http(s) base URL")
        url.port  # noqa: B018 (raises ValueError on a port that is no number)
        found.append(part.rstrip("/"))
    return found


def bounded(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        value = integer(raw)
        if not low <= value <= high:
            raise ValueError(f"not from {low} to {high}")
        return value
    parse.__doc__ = f"a whole number from {low} to {high}"
    return parse


def choice(*options: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw.strip() not in options:
            raise ValueError("not one of " + ", ".join(options))
        return raw.strip()
    parse.__doc__ = "one of " + ", ".join(f"`{o}`" for o in options)
    return parse


def semver_text(raw: str) -> str:
    """a version such as 1.4.0"""
    if not is_valid_version(raw.strip()):
        raise ValueError("not a version such as 1.4.0")
    return raw.strip()


def as_bool(value: Any) -> bool:
    """A flag from ``app.config``, which may hold a bool (tests, TOML) or text."""
    if isinstance(value, str):
        return flag(value)
    return bool(value)


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    parse: Callable[[str], Any]
    scope: str
    doc: str
    #: how the docs state the default when the value itself would mislead
    shown: str | None = None

    @property
    def env(self) -> str:
        return PREFIX + self.name


def _s(name: str, default: Any, parse: Callable[[str], Any], scope: str, doc: str,
       shown: str | None = None) -> Setting:
    return Setting(name, default, parse, scope, doc, shown)


SETTINGS: tuple[Setting, ...] = (
    _s("CONFIG", None, text, "registry", "a TOML file of settings (top-level keys are setting "
       "names), instead of `instance/gears.toml`.", "`instance/gears.toml`"),
    _s("INSTANCE_PATH", None, text, "registry", "the instance directory: config file, "
       "generated secret key, signing keys, engine data.", "`./instance`"),
    _s("DATABASE_URL", "sqlite:///registry.db", text, "registry",
       "SQLAlchemy URL. `postgresql://user@host/db` uses psycopg 3."),
    _s("STORAGE_URL", None, text, "registry", "`file:///path` or `s3://bucket/prefix`.",
       "`file://$PWD/blobs`"),
    _s("S3_ENDPOINT_URL", None, text, "registry", "the endpoint of a non-AWS S3-compatible "
       "store (MinIO, Ceph, R2). Credentials come from the standard AWS chain "
       "(`AWS_ACCESS_KEY_ID`, profiles, instance roles).", "AWS"),
    _s("S3_REGION", None, text, "registry", "region of the bucket."),
    _s("S3_CONNECT_TIMEOUT", 2.0, number, "registry",
       "seconds to open a connection to the S3 endpoint."),
    _s("S3_READ_TIMEOUT", 10.0, number, "registry", "seconds one read from the S3 endpoint "
       "may wait (per read, not per transfer)."),
    _s("S3_MAX_ATTEMPTS", 2, integer, "registry", "attempts per S3 request (botocore's "
       "standard retries). A stalled store costs a request at most attempts × (connect + "  # noqa: RUF001
       "read) seconds."),
    _s("STORAGE_BREAKER_FAILURES", 3, integer, "registry", "consecutive \"storage "
       "unavailable\" failures after which a server process stops calling the blob store "
       "(the circuit breaker opens): publishes, downloads and `/healthz`'s storage check "
       "answer `503 storage_unavailable` at once."),
    _s("STORAGE_BREAKER_SECONDS", 30.0, number, "registry", "how long the breaker stays "
       "open; then one call probes the store, and its success closes it."),
    _s("DOWNLOAD_REDIRECT", True, flag, "registry", "answer downloads from S3 storage with "
       "a presigned redirect rather than streaming the bytes through the server."),
    _s("SECRET_KEY", None, text, "registry", "signs web sessions and derives the key that "
       "encrypts installation secrets. Every replica needs the same value.",
       "generated into `instance/secret_key`"),
    _s("SECRET_KEY_FALLBACKS", [], names, "registry", "earlier secret keys, comma-separated, "
       "still accepted for decrypting installation secrets after a rotation.", "—"),
    _s("SIGNING_KEY_DIR", None, text, "registry", "where the registry's signing keys live.",
       "`instance/signing`"),
    _s("MAX_UPLOAD_MB", 16, integer, "registry", "largest accepted upload."),
    _s("BASE_URL", None, text, "registry", "the public URL, used in links the API returns.",
       "the request's host"),
    _s("TRUSTED_PROXIES", 0, integer, "registry", "how many proxy hops (load balancers, "
       "reverse proxies) in front of the server set `X-Forwarded-For`/`-Proto`/`-Host`; the "
       "client address rate limits use is the one the outermost trusted hop saw. With 0 the "
       "headers are ignored (anyone could forge them). Set it to exactly the number of "
       "proxies you run."),
    _s("TOKEN_FAILURE_LIMIT", 30, integer, "registry", "failed bearer-token authentications "
       "allowed per token, and per address for failing tokens, within the window; a valid "
       "token is never refused by them."),
    _s("TOKEN_FAILURE_WINDOW", 300.0, number, "registry",
       "the window of `GEARS_TOKEN_FAILURE_LIMIT`, in seconds."),
    _s("RATE_LIMIT_STORE", "database", choice("database", "memory"), "registry", "where "
       "failed authentications are counted: `database` (the `auth_failures` table, shared "
       "by every process and replica) or `memory` (per process)."),
    _s("LOGIN_ACCOUNT_FAILURE_LIMIT", 20, integer, "registry", "failed sign-ins allowed per "
       "account, from any address, per 15 minutes (besides 5 per address and account)."),
    _s("ADMIN_EMAIL", None, text, "operator", "the first admin, created by `marketplace "
       "init`; without it `init` creates `admin@gears.local`."),
    _s("ADMIN_PASSWORD", None, text, "operator", "the first admin's password; without it "
       "`marketplace init` prints a generated one once."),
    _s("VETTING_WORKERS", 1, bounded(0, 32), "operator", "`marketplace vet worker` "
       "processes `marketplace serve` starts beside gunicorn (and stops with it); `0` when "
       "dedicated `marketplace vet worker` processes run elsewhere. Vetting never runs in a "
       "web server process."),
    _s("GEAR_DATA_PATH", None, text, "engine", "where installations' data dirs live. Under a "
       "root engine each is an ext4 image of its own (`<id>.ext4`, 64 MiB, 4096 files) "
       "loop-mounted over `<id>` while the installation runs, so a gear can neither fill nor "
       "link into the filesystem of the database and keys; still, put this on a volume of "
       "its own.", "`instance/engine/data`"),
    _s("ENGINE_VERSION", ENGINE_VERSION, semver_text, "engine", "the engine version "
       "gears' `engine` ranges are matched against. Leave it unset: it is the package "
       "version; set it only to try an engine upgrade (installations whose installed "
       "version's range excludes it are suspended at start and resume when it is set back).",
       "the package version"),
    _s("ENGINE_URLS", [], base_urls, "engine", "comma-separated base URLs of engine nodes "
       "(`marketplace engine serve`), e.g. `http://127.0.0.1:8001`. Set, the web server runs "
       "no engine of its own: its pages reach the engine through these nodes and it forwards "
       "`/engine/v1/*` to them (a node that refuses connections is skipped for a few "
       "seconds). Empty, the engine runs inside each server process (embedded).",
       "— (embedded)"),
    _s("ENGINE_NODE_TOKEN", None, text, "engine", "the shared secret web servers and the "
       "scheduler present to engine nodes: on `/engine/v1/_node/*`, and on the engine API "
       "for any workspace (how the pages reach a node, having checked their own user). "
       "Every process of an installation needs the same value; keep it as secret as "
       "`GEARS_SECRET_KEY`.",
       "generated into `instance/engine-node.token`"),
    _s("ENGINE_TIMEOUT_SECONDS", 30.0, number, "engine", "the deadline of one call from a "
       "web server or the scheduler to an engine node (connect, and the whole answer); past "
       "it the caller answers `503 engine_unavailable`."),
    _s("KILLLIST_INTERVAL_SECONDS", 10.0, number, "engine", "how often the engine re-reads "
       "the kill list (yanked, quarantined or revoked versions) and stops what it names."),
    _s("VETTING_JOB_SECONDS", 120.0, number, "vetting", "wall-clock budget of one vetting "
       "job, run in a process of its own (its CPU time is capped by the kernel too); a job "
       "over it ends as `scanner_error`, version still pending, without a retry."),
    _s("VETTING_STALE_SECONDS", 600.0, number, "vetting", "a job whose worker died is "
       "retried after this long (three attempts); keep it above the job budget."),
    _s("VETTING_SANDBOX", True, flag, "vetting", "run the dynamic vetting check (the gear "
       "in a sandboxed worker); off, the check is skipped and says so."),
    _s("VETTING_ISOLATE", True, flag, "vetting", "run each vetting job in a process of its "
       "own under the job budget (off only for tests that replace a check in-process)."),
    _s("VETTING_SANDBOX_LEVEL", None, text, "vetting", "the sandbox level the dynamic check "
       "asks for.", "the best the host reaches"),
    _s("VETTING_SANDBOX_MIN_LEVEL", None, text, "vetting", "the weakest sandbox level the "
       "dynamic check accepts.", "`GEARS_SANDBOX_MIN_LEVEL`'s"),
    _s("SANDBOX_MIN_LEVEL", None, choice("strict", "standard", "dev-unsafe"), "runtime",
       "the weakest sandbox level untrusted gears may run at; below it they are refused, "
       "never silently degraded (see [security.md](security.md)).",
       "`strict` on Linux, `dev-unsafe` elsewhere"),
    _s("SANDBOX_UID_BASE", 1_900_000_000, integer, "runtime", "first uid of the range "
       "(65536 uids) gear workers run as, at every sandbox level, when the engine runs as "
       "root; uids that are host accounts are skipped. The runtime's directory must be "
       "traversable by other uids (o+x on every parent) so they reach the staged "
       "interpreter, SDK and gear, else workers are refused (`sandbox_uid_unavailable`)."),
    _s("CGROUP_PARENT", None, text, "runtime", "cgroup v2 only: a group delegated to the "
       "engine (e.g. systemd `Delegate=yes`) under which each worker gets its control group, "
       "when the engine may not enable controllers under its own group. The v1 controllers "
       "need no setting (see [security.md](security.md)).",
       "the engine's own cgroup + `/gears`"),
    _s("HTTP_ALLOW_PRIVATE_HOSTS", [], names, "runtime", "comma-separated host names or "
       "addresses gears may reach through `ctx.http` although they resolve to private or "
       "loopback addresses (on-prem sources). Set by the operator only; a manifest can "
       "never grant it.", "—"),
)

def runtime_options(config: Mapping[str, Any]) -> dict[str, Any]:
    """The runtime's settings from ``config`` (an ``app.config``), as keyword arguments of
    :class:`~marketplace.runtime.runtime.Runtime`: the runtime reads no environment."""
    hosts = config["HTTP_ALLOW_PRIVATE_HOSTS"]
    hosts = names(hosts) if isinstance(hosts, str) else hosts  # a config file's text
    return {"min_level": config["SANDBOX_MIN_LEVEL"] or None,
            "allow_private_hosts": frozenset(h.lower() for h in hosts),
            "uid_base": int(config["SANDBOX_UID_BASE"])}


def engine_version(config: Mapping[str, Any] | None = None) -> str:
    """The engine version this server runs as: ``config["ENGINE_VERSION"]`` (an
    ``app.config``; the current app's when ``None`` and there is one), else the
    package version. A bad value is a :class:`ConfigError` naming the setting."""
    if config is None:
        from flask import current_app, has_app_context

        if not has_app_context():
            return ENGINE_VERSION
        config = current_app.config
    value = config["ENGINE_VERSION"]
    try:
        return semver_text(str(value))
    except ValueError:
        raise ConfigError(f"ENGINE_VERSION ({BY_NAME['ENGINE_VERSION'].env}) must be a "
                          f"version such as 1.4.0, not {value!r}") from None


BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}
BY_ENV: dict[str, Setting] = {s.env: s for s in SETTINGS}

#: ``GEARS_*`` variables that are not registry settings: the ``gears`` developer
#: CLI's, and those the test suite and benchmarks read.
NOT_SETTINGS = frozenset(sdk_settings.VARIABLES)
NOT_SETTINGS_PREFIXES = ("GEARS_TEST_", "GEARS_FUZZ_", "GEARS_HYPOTHESIS_", "GEARS_LOAD_",
                         "GEARS_BENCH_")


def parse(setting: Setting, raw: str) -> Any:
    """``raw`` parsed as ``setting``; a :class:`ConfigError` naming the variable if not."""
    try:
        return setting.parse(raw)
    except ValueError as exc:
        wants = (setting.parse.__doc__ or "").strip()
        raise ConfigError(f"{setting.env}={raw!r} is not valid: {exc}; it must be "
                          f"{wants}") from None


def from_environ(name: str, environ: Mapping[str, str] | None = None) -> Any:
    """The setting ``name`` from ``GEARS_<name>``, parsed, else its default."""
    setting = BY_NAME[name]
    raw = (os.environ if environ is None else environ).get(setting.env)
    if raw is None or raw.strip() == "":
        return setting.default
    return parse(setting, raw)


def read_environ(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Every setting whose variable is set (and not empty), parsed."""
    environ = os.environ if environ is None else environ
    return {s.name: parse(s, environ[s.env]) for s in SETTINGS
            if environ.get(s.env, "").strip() != ""}


def unknown_variables(environ: Iterable[str]) -> list[tuple[str, str | None]]:
    """``GEARS_*`` names that are no setting, each with the closest known name."""
    known = [*BY_ENV, *NOT_SETTINGS]
    found = []
    for var in sorted(environ):
        if (not var.startswith(PREFIX) or var in BY_ENV or var in NOT_SETTINGS
                or var.startswith(NOT_SETTINGS_PREFIXES)):
            continue
        # Compared without the shared prefix, which would make every name look alike.
        close = difflib.get_close_matches(var[len(PREFIX):], [k[len(PREFIX):] for k in known],
                                          n=1, cutoff=0.6)
        found.append((var, PREFIX + close[0] if close else None))
    return found


def warn_unknown(environ: Iterable[str] | None = None) -> list[str]:
    """Log a warning for each unknown ``GEARS_*`` variable (a typo is never silent)."""
    messages = []
    for var, close in unknown_variables(os.environ if environ is None else environ):
        hint = f"; did you mean {close}?" if close else ""
        messages.append(f"{var} is not a Gears setting and is ignored{hint}")
        log.warning("%s", messages[-1])
    return messages
