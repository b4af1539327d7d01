"""Static analysis of every ``.py`` file: risky imports and calls, weighed against permissions.

The code is parsed with :mod:`ast`, never imported. Names are resolved
through the file's own imports (``import subprocess as sp; sp.run`` is
``subprocess.run``), so renaming does not hide a call; a call through a
name the file did not import resolves to the builtin of that name.

Severities follow what the sandbox does anyway: anything it cannot stop on
its own, or that only makes sense for escaping it, is ``high``; writing
files, which the sandbox refuses outside the scratch dir, is ``medium``;
network libraries are ``high`` when the gear declares no
``permissions.network`` (it should have no reason to talk to anyone) and
``medium`` when it does (it must use ``ctx.http``, the sandbox has no network).

What hides from a name-based scan is flagged on its own: the low-level
modules under the usual wrappers (``posix``, ``_socket``, ``_io``,
``_posixsubprocess``…, ``low_level_module``); names computed at run time
for ``getattr``, ``__import__``, ``importlib`` or ``sys.modules``
(``dynamic_access``), while constant names are resolved like any import or
call (``getattr(os, "system")`` is ``os.system``, ``sys.modules.get("ctypes")``
is ``ctypes``); reads of the host's environment and files
(:mod:`~marketplace.vetting.checks.host`).

Each file is analysed on its own: a file that does not parse, or that the
analysis cannot finish, is its own ``high`` finding and never hides the
findings of the others.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator

from marketplace.vetting.checks.host import HostReads
from marketplace.vetting.context import VetContext
from marketplace.vetting.findings import Finding, Severity, finding

#: Module prefixes and what importing or calling into them means.
MODULES: dict[str, str] = {
    **dict.fromkeys(("subprocess", "pty", "multiprocessing", "pexpect"), "process_spawn"),
    **dict.fromkeys(("socket", "urllib.request", "http.client", "requests", "httpx",
                     "aiohttp", "ftplib", "smtplib", "telnetlib", "urllib3", "websocket",
                     "websockets"), "raw_network"),
    **dict.fromkeys(("ctypes", "_ctypes", "cffi", "_cffi_backend"), "native_code"),
    **dict.fromkeys(("_socket", "_ssl"), "raw_network"),
    **dict.fromkeys(("_posixsubprocess", "_multiprocessing", "_winapi"), "process_spawn"),
    **dict.fromkeys(("importlib", "imp", "runpy"), "dynamic_code"),
    **dict.fromkeys(("pickle", "_pickle", "cPickle", "marshal", "shelve", "dill"),
                    "unsafe_deserialization"),
}
#: Calls by resolved name (exact) and what they mean.
CALLS: dict[str, str] = {
    **dict.fromkeys(("os.system", "os.popen", "os.fork", "os.forkpty", "os.kill",
                     "os.killpg"), "process_spawn"),
    **dict.fromkeys(("eval", "exec", "compile", "__import__", "builtins.eval",
                     "builtins.exec", "builtins.compile", "builtins.__import__"), "dynamic_code"),
    **dict.fromkeys(("os.remove", "os.unlink", "os.rmdir", "os.rename", "os.replace",
                     "os.mkdir", "os.makedirs", "os.chmod", "os.symlink", "os.link",
                     "shutil.rmtree", "shutil.move", "shutil.copy", "shutil.copyfile",
                     "shutil.copytree"), "file_write"),
}
CALL_PREFIXES: dict[str, str] = {"os.exec": "process_spawn", "os.spawn": "process_spawn",
                                 "os.posix_spawn": "process_spawn"}
OPENERS = frozenset({"open", "io.open", "_io.open", "builtins.open", "codecs.open", "os.open",
                     "io.FileIO", "_io.FileIO", "pathlib.Path", "pathlib.PosixPath"})
#: Modules below the standard wrappers: importing them is a way around a scan (and
#: around audit hooks) that names only the wrappers.
LOW_LEVEL = frozenset({"posix", "nt", "_posixsubprocess", "_socket", "_io", "_ctypes", "cffi",
                       "_cffi_backend", "_winapi", "_multiprocessing", "_signal", "_ssl", "mmap",
                       "fcntl", "_thread", "_imp", "_frozen_importlib",
                       "_frozen_importlib_external"})
#: ``posix.system`` is ``os.system``: the OS modules are one module to this scan.
OS_ALIASES = ("posix.", "nt.")
#: Calls whose first argument names a module to load.
IMPORTERS = frozenset({"__import__", "builtins.__import__", "importlib.import_module",
                       "importlib.__import__", "_imp.init_builtin", "imp.load_module"})
WRITE_METHODS = frozenset({"write_text", "write_bytes"})
SYS_MODULES_METHODS = frozenset({"update", "pop", "setdefault", "__setitem__", "__delitem__",
                                 "clear", "popitem"})
BUILTIN_MODULES = frozenset({"builtins", "__builtin__"})
#: Attribute names that hand out a module's or object's namespace to index at will.
NAMESPACE_ATTRS = frozenset({"__dict__", "__globals__", "__builtins__", "__loader__",
                             "__subclasses__", "__code__", "__closure__", "__bases__",
                             "__mro__", "__base__"})

MESSAGES: dict[str, str] = {
    "process_spawn": "starts or signals processes with {name}",
    "raw_network": "uses {name} for network access instead of ctx.http",
    "native_code": "loads native code with {name}",
    "dynamic_code": "runs dynamically built code with {name}",
    "unsafe_deserialization": "deserializes data with {name}",
    "file_write": "writes to the file system with {name}",
    "low_level_module": "uses the low-level module {name}, below the standard wrappers",
}


def _module_code(name: str) -> str | None:
    for prefix, code in MODULES.items():
        if name == prefix or name.startswith(prefix + "."):
            return code
    return None


def _os_name(name: str) -> str:
    """``posix.system`` → ``os.system`` (the low-level OS modules carry the same calls)."""
    for alias in OS_ALIASES:
        if name.startswith(alias):
            return "os." + name[len(alias):]
    return name


def _constant_str(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) \
        else None


class _Analyzer(HostReads, ast.NodeVisitor):
    """Collects ``(code, line, message)`` for one file."""

    def __init__(self) -> None:
        self.aliases: dict[str, str] = {}
        self.hits: list[tuple[str, int, str]] = []
        self.handled: set[int] = set()  # sys.modules nodes a call or subscript explained

    def hit(self, code: str, node: ast.AST, message: str) -> None:
        self.hits.append((code, getattr(node, "lineno", 0), message))

    # -- names --------------------------------------------------------------

    def resolve(self, node: ast.AST) -> str | None:
        """The dotted name an expression refers to, through the file's imports;
        ``getattr(m, "x")`` with a constant name is ``m.x``."""
        if isinstance(node, ast.Name):
            return self.aliases.get(node.id, node.id)
        if isinstance(node, ast.Attribute):
            base = self.resolve(node.value)
            return f"{base}.{node.attr}" if base else None
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id == "getattr" and len(node.args) >= 2):
            attr = _constant_str(node.args[1])
            base = self.resolve(node.args[0])
            return f"{base}.{attr}" if base and attr else None
        return None

    def is_module(self, node: ast.AST) -> bool:
        return isinstance(node, ast.Name) and node.id in self.aliases

    # -- imports ------------------------------------------------------------

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.aliases[alias.asname or alias.name.split(".")[0]] = (
                alias.name if alias.asname else alias.name.split(".")[0])
            self._check_import(alias.name, node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:  # the gear's own modules
            return
        base = node.module or ""
        for alias in node.names:
            full = f"{base}.{alias.name}"
            self.aliases[alias.asname or alias.name] = full
            self._check_import(full if _module_code(full) else base, node)
            self._check_reference(_os_name(full), node)

    def _check_import(self, name: str, node: ast.AST, how: str = "imports") -> None:
        code = _module_code(name)
        if code:
            self.hit(code, node, f"{how} {name}: " + MESSAGES[code].format(name=name))
        elif name.split(".")[0] in BUILTIN_MODULES:
            self.hit("builtins_patching", node, f"{how} {name}, which lets it replace "
                     "builtins for every module in the worker")
        top = name.split(".")[0]
        if top in LOW_LEVEL:
            self.hit("low_level_module", node, f"{how} {name}: "
                     + MESSAGES["low_level_module"].format(name=top))

    # -- calls --------------------------------------------------------------

    def visit_Call(self, node: ast.Call) -> None:
        name = self.resolve(node.func)
        if name:
            self._check_call(name, node)
        if isinstance(node.func, ast.Attribute) and node.func.attr in WRITE_METHODS:
            self.hit("file_write", node, f"writes a file with .{node.func.attr}()")
        if isinstance(node.func, ast.Attribute) and self._is_sys_modules(node.func.value):
            self.handled.add(id(node.func.value))
            if node.func.attr in SYS_MODULES_METHODS:
                self.hit("sys_modules_tampering", node, f"calls sys.modules.{node.func.attr}()")
            elif node.func.attr in ("get", "__getitem__"):
                self._check_module_lookup(node.args[0] if node.args else None, node,
                                          "sys.modules")
            else:
                self.hit("dynamic_access", node, f"walks sys.modules with "
                         f".{node.func.attr}(): any loaded module, whatever its name")
        self.check_host_call(name, node)
        self.generic_visit(node)

    def _check_call(self, name: str, node: ast.Call) -> None:
        self._check_reference(_os_name(name), node, called=True)
        if name in OPENERS:
            self._check_open(name, node)
        if name in IMPORTERS:
            self._check_module_lookup(node.args[0] if node.args else None, node, f"{name}()")
        if name in ("getattr", "setattr", "delattr", "hasattr") and node.args:
            self._check_attr_call(name, node)
        if name in ("vars", "globals", "locals", "dir") and node.args and self.is_module(
                node.args[0]):
            self.hit("dynamic_access", node, f"{name}() on module "
                     f"{self.resolve(node.args[0])}: its namespace, indexed at run time")

    def _check_reference(self, name: str, node: ast.AST, called: bool = False) -> None:
        """A dangerous function named (called or not: ``f = os.system`` is enough)."""
        code = CALLS.get(name) or next(
            (c for p, c in CALL_PREFIXES.items() if name.startswith(p)), None)
        if code is None and called and "." in name:
            code = _module_code(name.rsplit(".", 1)[0]) or _module_code(name)
        if code:
            self.hit(code, node, MESSAGES[code].format(name=f"{name}()" if called else name))

    def _check_module_lookup(self, arg: ast.AST | None, node: ast.AST, how: str) -> None:
        """A module reached by name: a constant name is that module; a computed one is
        whatever the gear wants at run time."""
        name = _constant_str(arg)
        if name is None:
            self.hit("dynamic_access", node, f"{how} with a module name computed at run time")
        else:
            self._check_import(name, node, how=f"reaches through {how}")

    def _check_open(self, name: str, node: ast.Call) -> None:
        self.check_host_path(name, node)
        if name.endswith(("Path", "FileIO")):
            return
        mode: ast.AST | None = node.args[1] if len(node.args) > 1 else None
        for kw in node.keywords:
            if kw.arg in ("mode", "flags"):
                mode = kw.value
        if name == "os.open":
            if mode is not None:
                self.hit("file_write", node, "opens a file with os.open() and explicit flags")
            return
        if mode is None:
            return
        if isinstance(mode, ast.Constant) and isinstance(mode.value, str):
            if set(mode.value) & set("wax+"):
                self.hit("file_write", node, f"opens a file for writing ({name}(…, "
                         f"{mode.value!r}))")
        else:
            self.hit("file_write", node, f"opens a file with a mode computed at run time "
                     f"({name}())")

    def _check_attr_call(self, name: str, node: ast.Call) -> None:
        target = node.args[0]
        builtins_target = isinstance(target, ast.Name) and target.id == "__builtins__"
        module = self.resolve(target) if self.is_module(target) else None
        if module is None and not builtins_target and not self._is_sys_modules(target):
            if len(node.args) >= 2 and _constant_str(node.args[1]) in NAMESPACE_ATTRS:
                self.hit("dynamic_access", node, f"{name}() of {_constant_str(node.args[1])}")
            return
        if name in ("setattr", "delattr") and (builtins_target or (module or "").split(".")[0]
                                               in BUILTIN_MODULES):
            self.hit("builtins_patching", node, f"{name}() on builtins")
            return
        attr = _constant_str(node.args[1]) if len(node.args) >= 2 else None
        where = "builtins" if builtins_target else (module or "sys.modules")
        if attr is None:
            self.hit("dynamic_access", node, f"{name}() on {where} with a name computed at "
                     "run time")
        elif name in ("setattr", "delattr"):
            self.hit("dynamic_getattr", node, f"{name}() patches module {where}")
        else:
            self._check_reference(_os_name(f"{where}.{attr}"), node)

    # -- attributes and subscripts -----------------------------------------

    def _is_sys_modules(self, node: ast.AST) -> bool:
        return self.resolve(node) == "sys.modules"

    def visit_Attribute(self, node: ast.Attribute) -> None:
        name = self.resolve(node)
        if name and not isinstance(node.ctx, ast.Store):
            self._check_reference(_os_name(name), node)
            if name == "sys.modules" and id(node) not in self.handled:
                self.hit("dynamic_access", node, "uses sys.modules itself: any loaded "
                         "module, whatever its name")
            self.check_host_attribute(name, node)
        if node.attr in NAMESPACE_ATTRS and node.attr != "__builtins__":
            self.hit("dynamic_access", node, f"reaches {node.attr}, a namespace to index at "
                     "run time")
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        """``from sys import modules`` / ``from os import environ``: the bare names."""
        if not isinstance(node.ctx, ast.Load) or node.id not in self.aliases:
            return
        name = self.aliases[node.id]
        if name == "sys.modules" and id(node) not in self.handled:
            self.hit("dynamic_access", node, "uses sys.modules itself: any loaded module, "
                     "whatever its name")
        self.check_host_attribute(name, node)

    def visit_Subscript(self, node: ast.Subscript) -> None:
        if self._is_sys_modules(node.value):
            self.handled.add(id(node.value))
            if not isinstance(node.ctx, ast.Store | ast.Del):
                self._check_module_lookup(node.slice, node, "sys.modules[…]")
        elif isinstance(node.value, ast.Name) and node.value.id == "__builtins__" and \
                not isinstance(node.ctx, ast.Store | ast.Del):
            key = _constant_str(node.slice)
            if key is None:
                self.hit("dynamic_access", node, "indexes __builtins__ with a name computed "
                         "at run time")
            else:
                self._check_reference(key, node, called=True)
        self.check_host_subscript(node)
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        self.check_host_constant(node)

    # -- assignments --------------------------------------------------------

    def _check_target(self, target: ast.AST, node: ast.AST, verb: str) -> None:
        base = target.value if isinstance(target, ast.Subscript | ast.Attribute) else None
        if isinstance(target, ast.Attribute) and self.resolve(target) == "sys.modules":
            self.hit("sys_modules_tampering", node, f"{verb} sys.modules itself")
        if base is None:
            return
        resolved = self.resolve(base)
        if isinstance(target, ast.Subscript) and resolved == "sys.modules":
            self.hit("sys_modules_tampering", node, f"{verb} an entry of sys.modules")
        elif resolved and resolved.split(".")[0] in BUILTIN_MODULES | {"__builtins__"}:
            self.hit("builtins_patching", node, f"{verb} {resolved} attributes or entries")

    def visit_Assign(self, node: ast.Assign) -> None:
        for target in node.targets:
            self._check_target(target, node, "replaces")
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self._check_target(node.target, node, "changes")
        self.generic_visit(node)

    def visit_Delete(self, node: ast.Delete) -> None:
        for target in node.targets:
            self._check_target(target, node, "deletes")
        self.generic_visit(node)


def analyze_source(source: str, filename: str = "<gear>") -> list[tuple[str, int, str]]:
    """``(code, line, message)`` for every risky import, call or assignment in ``source``;
    raises :class:`SyntaxError` when it does not parse (and :class:`ValueError` or
    :class:`RecursionError` for sources Python itself refuses)."""
    tree = ast.parse(source, filename=filename)
    analyzer = _Analyzer()
    analyzer.visit(tree)
    return analyzer.hits


def _severity(code: str, ctx: VetContext) -> Severity | None:
    if code == "raw_network" and ctx.manifest.permissions.network:
        return "medium"
    return None


def check_static(ctx: VetContext) -> Iterable[Finding]:
    """Every ``.py`` file: one finding per code and line."""
    return list(_findings(ctx))


def _findings(ctx: VetContext) -> Iterator[Finding]:
    for name in ctx.python_files():
        source = ctx.text(name)
        if source is None:
            yield finding("syntax_error", "is not UTF-8 text", file=name)
            continue
        try:
            hits = analyze_source(source, name)
        except SyntaxError as exc:
            yield finding("syntax_error", f"does not parse: {exc.msg}", file=name,
                          line=exc.lineno)
            continue
        except ValueError as exc:  # e.g. NUL bytes: Python would not import it either
            yield finding("syntax_error", f"does not parse: {exc}"[:300], file=name)
            continue
        except (RecursionError, MemoryError) as exc:
            yield finding("unanalyzable_file", f"the analysis could not finish "
                          f"({type(exc).__name__}): nested too deeply or too large to check; "
                          "read it by hand", file=name)
            continue
        except Exception as exc:  # one strange file must not hide the others' findings
            yield finding("unanalyzable_file", f"the analysis failed on this file "
                          f"({type(exc).__name__}: {exc})"[:300], file=name)
            continue
        seen: set[tuple[str, int]] = set()
        for code, line, message in hits:
            if (code, line) in seen:
                continue
            seen.add((code, line))
            if code == "raw_network":
                message += (" (the gear declares network hosts: use ctx.http)"
                            if ctx.manifest.permissions.network
                            else " (and declares no permissions.network)")
            yield finding(code, message, severity=_severity(code, ctx), file=name, line=line)
