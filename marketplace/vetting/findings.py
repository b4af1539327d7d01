"""Findings: what a vetting check reports, and the catalogue of their codes.

A finding is ``{code, severity, file, line, message}`` (plus ``check``, the
step that produced it, and ``path``, ``file:line`` for display). Codes are
stable: the admin guide documents each one, admins learn them, and
automation (auto-approval, filters) keys on them, never on messages.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

Severity = Literal["info", "low", "medium", "high", "critical"]
SEVERITIES: tuple[Severity, ...] = ("info", "low", "medium", "high", "critical")

#: Every code a check may emit, with its usual severity and what it means. Some
#: checks raise or lower the severity by context (e.g. network use with or
#: without a declared ``permissions.network``).
CODES: dict[str, tuple[Severity, str]] = {
    "archive_ok": ("info", "archive safety checks and manifest validation passed"),
    "hook_not_implemented": ("high", "a hook declared in gear.json has no @hookimpl function"),
    "hook_undeclared": ("medium", "an @hookimpl function is not declared in gear.json"),
    "hook_not_for_kind": ("high", "a declared hook does not exist for the gear's kind"),
    "hook_bad_arguments": ("high", "a hook implementation takes arguments its spec lacks"),
    "entrypoint_missing": ("critical", "the entrypoint module is not in the archive"),
    "syntax_error": ("high", "a Python file does not parse (it is reported on its own and "
                             "never hides the findings of other files)"),
    "process_spawn": ("high", "starts processes (subprocess, os.system, os.exec*, os.fork)"),
    "raw_network": ("high", "opens network connections itself instead of through ctx.http"),
    "native_code": ("high", "loads native code (ctypes, cffi)"),
    "dynamic_code": ("high", "runs code built at run time (eval, exec, compile, __import__, "
                             "importlib)"),
    "unsafe_deserialization": ("high", "unpickles or unmarshals data"),
    "file_write": ("medium", "opens files for writing (the sandbox refuses this anyway)"),
    "sys_modules_tampering": ("high", "changes sys.modules"),
    "builtins_patching": ("high", "changes builtins"),
    "dynamic_getattr": ("medium", "setattr/delattr patches a module"),
    "dynamic_access": ("high", "reaches modules or attributes by names computed at run time "
                               "(getattr, __import__, importlib, sys.modules, __dict__)"),
    "low_level_module": ("high", "uses a low-level module below the standard wrappers (posix, "
                                 "_socket, _io, _posixsubprocess, _ctypes, cffi…)"),
    "host_secret_read": ("high", "reads the host's secrets from the environment (GEARS_*, "
                                 "*SECRET*, *TOKEN*…, a computed name, or all of it)"),
    "environment_read": ("low", "reads an environment variable instead of its config"),
    "host_file_read": ("high", "opens or names a file of the host outside the gear "
                               "(/etc/passwd, absolute paths, ~, ..)"),
    "unanalyzable_file": ("high", "a Python file the static analysis could not finish "
                                  "(nested too deeply or too large)"),
    "opaque_binary": ("high", "a binary file that is no known image format: code or data "
                              "nobody can review"),
    "large_file": ("medium", "a file larger than the review limit (1 MiB)"),
    "secret_aws_key": ("critical", "an AWS access key id is in the code"),
    "secret_private_key": ("critical", "a private key is in the code"),
    "secret_token": ("high", "an API token (gears_, ghp_, sk_live_, xox…) is in the code"),
    "secret_generic": ("medium", "a high-entropy string assigned to a key/secret/token name"),
    "readme_missing": ("low", "no README, or an empty one"),
    "license_missing": ("low", "no license in gear.json and no LICENSE file"),
    "config_schema_invalid": ("high", "config_schema is not a usable JSON Schema"),
    "capabilities_initial": ("info", "the capabilities the first reviewed version asks for"),
    "capabilities_added": ("medium", "capabilities added since the last approved version"),
    "capabilities_removed": ("info", "capabilities dropped since the last approved version"),
    "sandbox_ok": ("info", "the gear loaded and its hooks ran in the production sandbox"),
    "sandbox_unavailable": ("high", "the sandbox could not start on the vetting host; "
                                    "the dynamic test did not run"),
    "dynamic_load_failed": ("high", "the gear failed to load in the sandbox"),
    "dynamic_hook_error": ("medium", "a hook raised on generated input"),
    "dynamic_timeout": ("medium", "a hook exceeded its deadline"),
    "dynamic_crash": ("high", "the worker died (a limit or a refused system call)"),
    "dynamic_patch_refused": ("high", "a hook wrote profile fields outside its write set"),
    "dynamic_invalid_result": ("medium", "a hook returned something its spec does not allow"),
    "dynamic_permission_denied": ("high", "the sandbox refused an operation the gear tried"),
    "dynamic_refused": ("high", "the gear tried, with counts, what the sandbox refuses "
                                "(processes, sockets, native code, files outside the gear), "
                                "even if it caught the error"),
    "dynamic_ctx_refused": ("medium", "the host refused ctx requests (undeclared secrets or "
                                      "hosts, invalid values), with counts"),
    "dynamic_http_request": ("info", "a ctx.http request (method and host) to a declared host, "
                                     "answered by the vetting recorder instead of the network"),
    "scanner_error": ("high", "a vetting check itself failed; the version stays pending"),
}


@dataclass(frozen=True)
class Finding:
    """One thing a check found, located in a file (and line) when it can be."""

    code: str
    severity: Severity
    message: str
    file: str | None = None
    line: int | None = None
    check: str | None = None

    def to_dict(self) -> dict[str, Any]:
        path = None if self.file is None else (
            self.file if self.line is None else f"{self.file}:{self.line}")
        return {"code": self.code, "severity": self.severity, "file": self.file,
                "line": self.line, "message": self.message, "check": self.check, "path": path}


def finding(code: str, message: str, *, severity: Severity | None = None,
            file: str | None = None, line: int | None = None) -> Finding:
    """A finding with the code's catalogued severity unless ``severity`` overrides it."""
    if code not in CODES:
        raise KeyError(f"unknown finding code {code!r}; add it to CODES")
    return Finding(code, severity or CODES[code][0], message, file, line)


def rank(severity: str) -> int:
    return SEVERITIES.index(severity) if severity in SEVERITIES else len(SEVERITIES)


def worst(findings: Iterable[dict[str, Any] | Finding]) -> str:
    """The highest severity among ``findings`` (``info`` when there are none)."""
    best = 0
    for f in findings:
        sev = f.severity if isinstance(f, Finding) else str(f.get("severity", "info"))
        best = max(best, rank(sev))
    return SEVERITIES[min(best, len(SEVERITIES) - 1)]
