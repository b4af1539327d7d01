"""Reads of the host: its environment (where the registry's and engine's secrets live)
and its files outside the gear.

A gear gets its settings from ``config`` and its secrets from ``ctx.secrets``;
it has no reason to read the process environment, let alone ``GEARS_SECRET_KEY``
or ``AWS_SECRET_ACCESS_KEY``, nor ``/etc/passwd``. The sandbox scrubs the
environment and hides the file system, but a reviewer must see the attempt:
a gear that tries is telling what it would do on a host where that layer is
missing. Mixed into the static analyzer (:mod:`~marketplace.vetting.checks.static`),
which resolves names through the file's imports before calling these.
"""

from __future__ import annotations

import ast
from typing import Any

from gears_sdk import patterns

#: The environment mapping, however it is reached.
ENVIRON = frozenset({"os.environ", "os.environb", "posix.environ", "nt.environ"})
#: Calls that read one variable: ``name → how``.
ENV_GETTERS = frozenset({"os.getenv", "os.getenvb", "posix.getenv", *(
    f"{e}.{m}" for e in ENVIRON for m in ("get", "pop", "setdefault", "__getitem__"))})
#: Calls that hand out the whole environment.
ENV_DUMPERS = frozenset(f"{e}.{m}" for e in ENVIRON
                        for m in ("copy", "items", "keys", "values", "__iter__"))
#: Variable names that hold secrets: the registry's own settings, cloud and database
#: credentials, anything named like a key, token or password.
SECRET_ENV = patterns.compile(r"(?i)^GEARS_|SECRET|PASSW|TOKEN|KEY|CREDENTIAL|AUTH|"
                              r"DATABASE_URL|^AWS_|^PG|_DSN$|COOKIE|SESSION")
#: Places on a host a gear has no business naming at all.
SENSITIVE_PATH = patterns.compile(r"^(/etc/|/proc/|/sys/|/root(/|$)|/dev/|/run/|/var/run/|/var/lib/|"
                            r"/boot/|~/?\.(ssh|aws|config|gnupg|docker|kube)|/\.dockerenv$)")


def _constant_str(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) \
        else None


def _looks_like_path(text: str) -> bool:
    return 0 < len(text) < 300 and not any(c.isspace() for c in text)


class HostReads:
    """Adds host-read findings; the analyzer supplies ``resolve`` and ``hit``."""

    resolve: Any
    hit: Any

    def _env_handled(self) -> set[int]:
        handled: set[int] | None = getattr(self, "_env_nodes", None)
        if handled is None:
            handled = set()
            self._env_nodes = handled
        return handled

    def _env_read(self, key_node: ast.AST | None, node: ast.AST, how: str) -> None:
        key = _constant_str(key_node)
        if key is None:
            self.hit("host_secret_read", node, f"reads an environment variable named at run "
                     f"time ({how}): any of the host's secrets")
        elif SECRET_ENV.search(key):
            self.hit("host_secret_read", node, f"reads the host's {key} from the environment "
                     f"({how}); secrets come from ctx.secrets")
        else:
            self.hit("environment_read", node, f"reads the environment variable {key} "
                     f"({how}); settings come from config")

    def check_host_call(self, name: str | None, node: ast.Call) -> None:
        if name is None:
            return
        if name in ENV_GETTERS:
            if isinstance(node.func, ast.Attribute):
                self._env_handled().add(id(node.func.value))
            self._env_read(node.args[0] if node.args else None, node, f"{name}()")
        elif name in ENV_DUMPERS:
            if isinstance(node.func, ast.Attribute):
                self._env_handled().add(id(node.func.value))
            self.hit("host_secret_read", node, f"reads the whole environment ({name}()), "
                     "the host's secrets included")

    def check_host_attribute(self, name: str | None, node: ast.AST) -> None:
        """``os.environ`` used as a whole (passed on, iterated, copied)."""
        if name in ENVIRON and id(node) not in self._env_handled() and \
                not isinstance(getattr(node, "ctx", None), ast.Store):
            self.hit("host_secret_read", node, f"uses {name} as a whole: every variable of "
                     "the host, its secrets included")

    def check_host_subscript(self, node: ast.Subscript) -> None:
        if self.resolve(node.value) in ENVIRON:
            self._env_handled().add(id(node.value))
            self._env_read(node.slice, node, "os.environ[…]")

    def check_host_path(self, opener: str, node: ast.Call) -> None:
        """A file opened by a path outside the gear: absolute, in a home, or climbing up."""
        path = _constant_str(node.args[0]) if node.args else None
        if path is None or not _looks_like_path(path):
            return
        if path.startswith(("/", "~")) or "/../" in f"/{path}/":
            self.hit("host_file_read", node, f"opens {path!r} with {opener}(): a file of the "
                     "host, outside the gear")

    def check_host_constant(self, node: ast.Constant) -> None:
        """A sensitive host path spelled anywhere (``p = "/etc/passwd"; open(p)``)."""
        text = node.value
        if isinstance(text, str) and _looks_like_path(text) and SENSITIVE_PATH.match(text):
            self.hit("host_file_read", node, f"names the host path {text!r}")
