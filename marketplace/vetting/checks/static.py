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
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator

from marketplace.vetting.context import VetContext
from marketplace.vetting.findings import Finding, Severity, finding

#: Module prefixes and what importing or calling into them means.
MODULES: dict[str, str] = {
    **dict.fromkeys(("subprocess", "pty", "multiprocessing", "pexpect"), "process_spawn"),
    **dict.fromkeys(("socket", "urllib.request", "http.client", "requests", "httpx",
                     "aiohttp", "ftplib", "smtplib", "telnetlib", "urllib3", "websocket",
                     "websockets"), "raw_network"),
    **dict.fromkeys(("ctypes", "_ctypes", "cffi"), "native_code"),
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
OPENERS = frozenset({"open", "io.open", "builtins.open", "codecs.open", "os.open"})
WRITE_METHODS = frozenset({"write_text", "write_bytes"})
SYS_MODULES_METHODS = frozenset({"update", "pop", "setdefault", "__setitem__", "__delitem__",
                                 "clear", "popitem"})
BUILTIN_MODULES = frozenset({"builtins", "__builtin__"})

MESSAGES: dict[str, str] = {
    "process_spawn": "starts or signals processes with {name}",
    "raw_network": "uses {name} for network access instead of ctx.http",
    "native_code": "loads native code with {name}",
    "dynamic_code": "runs dynamically built code with {name}",
    "unsafe_deserialization": "deserializes data with {name}",
    "file_write": "writes to the file system with {name}",
}


def _module_code(name: str) -> str | None:
    for prefix, code in MODULES.items():
        if name == prefix or name.startswith(prefix + "."):
            return code
    return None


class _Analyzer(ast.NodeVisitor):
    """Collects ``(code, line, message)`` for one file."""

    def __init__(self) -> None:
        self.aliases: dict[str, str] = {}
        self.hits: list[tuple[str, int, str]] = []

    def hit(self, code: str, node: ast.AST, message: str) -> None:
        self.hits.append((code, getattr(node, "lineno", 0), message))

    # -- names --------------------------------------------------------------

    def resolve(self, node: ast.AST) -> str | None:
        """The dotted name an expression refers to, through the file's imports."""
        if isinstance(node, ast.Name):
            return self.aliases.get(node.id, node.id)
        if isinstance(node, ast.Attribute):
            base = self.resolve(node.value)
            return f"{base}.{node.attr}" if base else None
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

    def _check_import(self, name: str, node: ast.AST) -> None:
        code = _module_code(name)
        if code:
            self.hit(code, node, f"imports {name}: " + MESSAGES[code].format(name=name))
        elif name.split(".")[0] in BUILTIN_MODULES:
            self.hit("builtins_patching", node, f"imports {name}, which lets it replace "
                     "builtins for every module in the worker")

    # -- calls --------------------------------------------------------------

    def visit_Call(self, node: ast.Call) -> None:
        name = self.resolve(node.func)
        if name:
            self._check_call(name, node)
        if isinstance(node.func, ast.Attribute) and node.func.attr in WRITE_METHODS:
            self.hit("file_write", node, f"writes a file with .{node.func.attr}()")
        if (isinstance(node.func, ast.Attribute) and node.func.attr in SYS_MODULES_METHODS
                and self.resolve(node.func.value) == "sys.modules"):
            self.hit("sys_modules_tampering", node, f"calls sys.modules.{node.func.attr}()")
        self.generic_visit(node)

    def _check_call(self, name: str, node: ast.Call) -> None:
        code = CALLS.get(name) or next(
            (c for p, c in CALL_PREFIXES.items() if name.startswith(p)), None)
        if code is None and "." in name:
            code = _module_code(name.rsplit(".", 1)[0]) or _module_code(name)
        if code:
            self.hit(code, node, MESSAGES[code].format(name=f"{name}()"))
        if name in OPENERS:
            self._check_open(name, node)
        if name in ("getattr", "setattr", "delattr") and node.args:
            self._check_attr_call(name, node)

    def _check_open(self, name: str, node: ast.Call) -> None:
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
        module = self.resolve(target) if self.is_module(target) else None
        if module is None and not (isinstance(target, ast.Name) and target.id == "__builtins__"):
            return
        if name != "getattr" and (module or "builtins").split(".")[0] in BUILTIN_MODULES | {
                "__builtins__"}:
            self.hit("builtins_patching", node, f"{name}() on builtins")
            return
        dynamic = len(node.args) < 2 or not isinstance(node.args[1], ast.Constant)
        if name == "getattr" and dynamic:
            self.hit("dynamic_getattr", node, f"getattr() on module {module} with a name "
                     "computed at run time")
        elif name != "getattr":
            self.hit("dynamic_getattr", node, f"{name}() patches module {module}")

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
    raises :class:`SyntaxError` when it does not parse."""
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
