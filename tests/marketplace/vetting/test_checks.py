"""Every vetting check, each with a good gear and a bad one. No gear code is imported."""

from __future__ import annotations

import textwrap

import pytest

from marketplace.vetting.checks import CHECKS
from marketplace.vetting.checks.files import check_files
from marketplace.vetting.checks.hooks import check_hooks
from marketplace.vetting.checks.package import (
    check_archive,
    check_capabilities,
    check_config_schema,
    check_readme_license,
)
from marketplace.vetting.checks.secrets import check_secrets, entropy
from marketplace.vetting.checks.static import analyze_source, check_static
from marketplace.vetting.findings import CODES
from marketplace.vetting.pipeline import run_checks
from tests.marketplace.vetting.conftest import codes

GOOD_TEMPLATE = None  # the factory's default module: a clean gear_render


def test_archive_check_records_an_info_summary(vet_ctx):
    (f,) = check_archive(vet_ctx())
    assert f.code == "archive_ok" and f.severity == "info"
    assert "files" in f.message and "gear_render" in f.message


# -- hooks --------------------------------------------------------------------


def test_hooks_good_gear_has_no_findings(vet_ctx):
    assert list(check_hooks(vet_ctx())) == []


def test_hooks_declared_but_not_implemented(vet_ctx):
    ctx = vet_ctx(module_source="def gear_render(profile, content, config, ctx):\n    pass\n")
    assert codes(check_hooks(ctx)) == ["hook_not_implemented"]


def test_hooks_undeclared_and_bad_arguments(vet_ctx):
    src = textwrap.dedent('''
        import gears_sdk
        from gears_sdk import hookimpl as impl_marker

        @gears_sdk.hookimpl
        def gear_render(profile, content, config, ctx, extra):
            return None

        @gears_sdk.hookimpl(specname="gear_install")
        def install(config, ctx):
            return None
    ''')
    found = list(check_hooks(vet_ctx(module_source=src)))
    assert sorted(codes(found)) == ["hook_bad_arguments", "hook_undeclared"]
    bad = next(f for f in found if f.code == "hook_bad_arguments")
    assert "extra" in bad.message and bad.line == 6


def test_hooks_not_for_kind(vet_ctx):
    src = ("from gears_sdk import hookimpl\n\n@hookimpl\ndef gear_on_event(event, profile, "
           "config, ctx):\n    return None\n\n@hookimpl\ndef gear_render(profile, content, "
           "config, ctx):\n    return None\n")
    # an extension declaring a template hook: the manifest reader already refuses
    # this at upload, so build the context by hand with a patched manifest
    ctx = vet_ctx(module_source=src)
    object.__setattr__(ctx.archive.manifest, "hooks", ("gear_render", "gear_on_event"))
    assert "hook_not_for_kind" in codes(check_hooks(ctx))


def test_hooks_followed_into_the_gears_own_package(vet_ctx):
    impl = ("from gears_sdk import hookimpl\n\n@hookimpl\n"
            "def gear_render(profile, content):\n    return None\n")
    ctx = vet_ctx("acme/split", module_source="x = 1\n", extra_files={
        "split/__init__.py": "from .impl import gear_render\n", "split/impl.py": impl})
    assert list(check_hooks(ctx)) == []  # the package shadows split.py, as on import
    broken = vet_ctx("acme/split", module_source="x = 1\n", extra_files={
        "split/__init__.py": "from .impl import gear_render\n",
        "split/impl.py": impl.replace("@hookimpl", "")})
    (f,) = check_hooks(broken)
    assert f.code == "hook_not_implemented" and f.file == "split/__init__.py"


def test_hooks_entrypoint_missing(vet_ctx):
    ctx = vet_ctx()
    object.__setattr__(ctx.archive.manifest, "entrypoint", "nowhere")
    assert codes(check_hooks(ctx)) == ["entrypoint_missing"]


# -- static analysis ----------------------------------------------------------


def test_static_good_gear_is_clean(vet_ctx):
    assert list(check_static(vet_ctx())) == []


@pytest.mark.parametrize(("source", "code"), [
    ("import subprocess\nsubprocess.run(['ls'])", "process_spawn"),
    ("import os\nos.system('id')", "process_spawn"),
    ("import os as o\no.execv('/bin/sh', [])", "process_spawn"),
    ("import os\nos.fork()", "process_spawn"),
    ("import socket", "raw_network"),
    ("from urllib.request import urlopen\nurlopen('http://x')", "raw_network"),
    ("import http.client", "raw_network"),
    ("import requests\nrequests.get('https://x')", "raw_network"),
    ("import ctypes", "native_code"),
    ("eval('1+1')", "dynamic_code"),
    ("exec('x=1')", "dynamic_code"),
    ("compile('x', 'f', 'exec')", "dynamic_code"),
    ("__import__('os')", "dynamic_code"),
    ("import importlib\nimportlib.import_module('os')", "dynamic_code"),
    ("import pickle\npickle.loads(b'')", "unsafe_deserialization"),
    ("import marshal\nmarshal.loads(b'')", "unsafe_deserialization"),
    ("open('/tmp/x', 'w').write('x')", "file_write"),
    ("from pathlib import Path\nPath('x').write_text('y')", "file_write"),
    ("import sys\nsys.modules['json'] = None", "sys_modules_tampering"),
    ("import sys\nsys.modules.update({})", "sys_modules_tampering"),
    ("import builtins\nbuiltins.open = None", "builtins_patching"),
    ("__builtins__['open'] = None", "builtins_patching"),
    ("import os\nname = 'sys' + 'tem'\ngetattr(os, name)('id')", "dynamic_access"),
    ("import os\nsetattr(os, 'getcwd', None)", "dynamic_getattr"),
    # Below the wrappers: the low-level modules carry the same powers.
    ("import posix\nposix.system('id')", "process_spawn"),
    ("import posix\nposix.system('id')", "low_level_module"),
    ("from posix import system", "process_spawn"),
    ("import _socket\n_socket.socket()", "raw_network"),
    ("import _socket", "low_level_module"),
    ("import _io\n_io.open('x.txt')", "low_level_module"),
    ("import _posixsubprocess", "process_spawn"),
    ("import cffi", "native_code"),
    # Reached by name: constant names resolve, computed names are dynamic access.
    ("import sys\nsys.modules.get('ctypes')", "native_code"),
    ("import sys\nsys.modules['subprocess'].run(['id'])", "process_spawn"),
    ("import sys\nsys.modules.get(name)", "dynamic_access"),
    ("import sys\nm = sys.modules\nm['ctypes']", "dynamic_access"),
    ("from sys import modules\nmodules[name]", "dynamic_access"),
    ("import os\ngetattr(os, 'ch' + 'mod')('/x', 0o777)", "dynamic_access"),
    ("import os\ngetattr(os, 'system')('id')", "process_spawn"),
    ("import os\nrun = os.system\nrun('id')", "process_spawn"),
    ("__import__('sub' + 'process')", "dynamic_access"),
    ("__import__('subprocess')", "process_spawn"),
    ("import importlib\nimportlib.import_module(name)", "dynamic_access"),
    ("import importlib\nimportlib.import_module('ctypes')", "native_code"),
    ("import os\nvars(os)[name]", "dynamic_access"),
    ("import os\nos.__dict__['system']", "dynamic_access"),
    ("__builtins__['ev' + 'al']", "dynamic_access"),
    ("().__class__.__bases__[0].__subclasses__()", "dynamic_access"),
    # The host's secrets and files.
    ("import os\nos.environ['GEARS_SECRET_KEY']", "host_secret_read"),
    ("import os\nos.environ.get('AWS_SECRET_ACCESS_KEY')", "host_secret_read"),
    ("import os\nos.getenv('GEARS_DATABASE_URL')", "host_secret_read"),
    ("from os import environ\nenviron['API_TOKEN']", "host_secret_read"),
    ("import os\nos.environ.get(name)", "host_secret_read"),
    ("import os\nsecrets = dict(os.environ)", "host_secret_read"),
    ("import os\nfor k, v in os.environ.items(): pass", "host_secret_read"),
    ("import os\nos.getenv('TZ')", "environment_read"),
    ("open('/etc/passwd').read()", "host_file_read"),
    ("import _io\n_io.open('/etc/shadow')", "host_file_read"),
    ("p = '/proc/self/environ'\nopen(p).read()", "host_file_read"),
    ("from pathlib import Path\nPath('/root/.ssh/id_rsa').read_text()", "host_file_read"),
    ("open('../../secrets.json')", "host_file_read"),
    ("open('~/.aws/credentials')", "host_file_read"),
])
def test_static_flags(source, code):
    found = [c for c, _line, _msg in analyze_source(source)]
    assert code in found, found


@pytest.mark.parametrize("source", [
    "import re\nre.compile('x')",
    "from urllib.parse import quote\nquote('x')",
    "open('data.json').read()",
    "open('data.json', 'rb').read()",
    "import os\nos.path.join('a', 'b')",
    "getattr(object(), 'x', None)",
    "import json\njson.loads('{}')",
    "import sys\nsys.modules.get('json')",
    "import os\npath = os.path.join(os.path.dirname(__file__), 'data.json')\nopen(path).read()",
    "html = '<a href=\"/home/sale\">Sale</a>'",
    "getattr(config, key, None)",
])
def test_static_leaves_harmless_code_alone(source):
    assert analyze_source(source) == []


def test_static_network_severity_depends_on_declared_permissions(vet_ctx):
    src = "import requests\n\ndef fetch():\n    return requests.get('https://api.example.com')\n"
    extra = {"hello/net.py": src}
    undeclared = [f for f in check_static(vet_ctx(extra_files=extra)) if f.code == "raw_network"]
    assert {f.severity for f in undeclared} == {"high"}
    declared = [f for f in check_static(vet_ctx(extra_files=extra, permissions={
        "network": ["api.example.com"], "profile": {"read": [], "write": []}}))
        if f.code == "raw_network"]
    assert {f.severity for f in declared} == {"medium"}
    assert declared[0].file == "hello/net.py" and declared[0].line == 1


def test_static_reports_syntax_errors_with_location(vet_ctx):
    (f,) = check_static(vet_ctx(extra_files={"broken.py": "def x(:\n"}))
    assert f.code == "syntax_error" and f.file == "broken.py" and f.line == 1


@pytest.mark.parametrize("bad", [
    "def x(:\n",                                   # a syntax error
    "x = 1\0\n",                                  # a NUL byte
    "x = " + "(" * 300 + ")" * 300 + "\n",         # too many parentheses for the parser
    "x = 1" + "".join(f" + {i}" for i in range(100_000)) + "\n",  # too deep to walk
    "a" + "".join(f".b{i}" for i in range(100_000)) + "\n",
])
def test_an_unparseable_file_never_hides_the_findings_of_the_others(vet_ctx, bad):
    ctx = vet_ctx(extra_files={"hello/aaa_broken.py": bad,
                               "hello/zzz_net.py": "import posix\nposix.system('id')\n",
                               "hello/mmm_env.py": "import os\nos.environ['GEARS_SECRET_KEY']\n"})
    found = {(f.code, f.file) for f in check_static(ctx)}
    broken = {code for code, file in found if file == "hello/aaa_broken.py"}
    assert broken & {"syntax_error", "unanalyzable_file"}, found
    assert all(CODES[c][0] == "high" for c in broken)
    assert ("process_spawn", "hello/zzz_net.py") in found
    assert ("low_level_module", "hello/zzz_net.py") in found
    assert ("host_secret_read", "hello/mmm_env.py") in found
    if len(bad) < 10_000:  # the whole pipeline too: no scanner error hides the rest
        codes_all = [f["code"] for f in run_checks(ctx)]
        assert "scanner_error" not in codes_all and "process_spawn" in codes_all


def test_a_large_opaque_binary_is_its_own_finding(vet_ctx):
    import os as _os

    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 64
    ctx = vet_ctx(extra_files={"hello/payload.bin": _os.urandom(7 * 1024 * 1024),
                               "hello/icon.png": png,
                               "hello/blob.dat": b"\x00\x01\x02 opaque"})
    found = {(f.code, f.file): f.severity for f in check_files(ctx)}
    assert found[("opaque_binary", "hello/payload.bin")] == "high"
    assert found[("large_file", "hello/payload.bin")] == "medium"
    assert found[("opaque_binary", "hello/blob.dat")] == "high"
    assert not any(file == "hello/icon.png" for _code, file in found)
    assert list(check_files(vet_ctx("acme/clean"))) == []


# -- secrets ------------------------------------------------------------------


def test_secrets_good_gear_is_clean(vet_ctx):
    assert list(check_secrets(vet_ctx())) == []


def test_secrets_found_in_code_and_data(vet_ctx):
    gh = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
    ctx = vet_ctx(extra_files={
        "hello_keys.py": f'AWS = "AKIAIOSFODNN7EXAMPLF"\nGH = "{gh}"\n'
                         'api_key = "q8Zr2Lx9Vb4Nm7Tk1Wc6Hy3Pd5"\n'
                         'STRIPE = "sk_live_4eC39HqLyjWDarjtT1zdp7dc"\n'
                         'GEARS = "gears_' + "Ab3" * 12 + '"\n',
        "config.json": '{"password": "placeholder"}',
        "key.pem": "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n",
    })
    found = list(check_secrets(ctx))
    by_code = {(f.code, f.file, f.line) for f in found}
    assert ("secret_aws_key", "hello_keys.py", 1) in by_code
    assert ("secret_token", "hello_keys.py", 2) in by_code
    assert ("secret_generic", "hello_keys.py", 3) in by_code
    assert ("secret_token", "hello_keys.py", 4) in by_code
    assert ("secret_token", "hello_keys.py", 5) in by_code
    assert ("secret_private_key", "key.pem", 1) in by_code
    assert not any(f.file == "config.json" for f in found)  # low entropy placeholder


def test_entropy_separates_random_from_words():
    assert entropy("q8Zr2Lx9Vb4Nm7Tk1Wc6Hy3Pd5") > 4
    assert entropy("aaaaaaaaaaaaaaaa") == 0


# -- package ------------------------------------------------------------------


def test_readme_and_license_present(vet_ctx):
    assert list(check_readme_license(vet_ctx())) == []


def test_readme_empty_and_license_missing(vet_ctx):
    ctx = vet_ctx(extra_files={"README.md": "   \n"})
    object.__setattr__(ctx.archive.manifest, "license", None)
    assert sorted(codes(check_readme_license(ctx))) == ["license_missing", "readme_missing"]


def test_license_file_is_enough(vet_ctx):
    ctx = vet_ctx(extra_files={"LICENSE": "MIT License\n"})
    object.__setattr__(ctx.archive.manifest, "license", None)
    assert list(check_readme_license(ctx)) == []


def test_config_schema_valid(vet_ctx):
    ctx = vet_ctx(config_schema={"type": "object", "properties": {
        "window_days": {"type": "integer", "minimum": 1, "default": 90}}})
    assert list(check_config_schema(ctx)) == []


@pytest.mark.parametrize(("schema", "words"), [
    ({"type": "object", "properties": {"n": {"type": "integer", "minimum": 1, "default": 0}}},
     "'n'"),
    ({"type": "object", "properties": {"n": {"type": "nonsense"}}}, "not a valid JSON Schema"),
    ({"type": "array"}, "must describe an object"),
])
def test_config_schema_invalid(vet_ctx, schema, words):
    # The SDK refuses these at upload already; the check is the reviewer's record of it
    # and a second line should a manifest ever reach vetting another way.
    ctx = vet_ctx()
    object.__setattr__(ctx.archive.manifest, "config_schema", schema)
    (f,) = check_config_schema(ctx)
    assert f.code == "config_schema_invalid" and words in f.message


def test_capabilities_first_version_is_info(vet_ctx):
    (f,) = check_capabilities(vet_ctx())
    assert (f.code, f.severity) == ("capabilities_initial", "info")
    assert "profile.read:attributes.first_name" in f.message


def test_capabilities_unchanged_is_silent_and_growth_is_medium(vet_ctx):
    ctx = vet_ctx()
    same = ctx.archive.manifest.to_dict()
    assert list(check_capabilities(vet_ctx(previous=same))) == []
    grown = vet_ctx(previous=same, permissions={
        "network": ["api.example.com"], "profile": {"read": [], "write": []}})
    found = {f.code: f for f in check_capabilities(grown)}
    assert found["capabilities_added"].severity == "medium"
    assert "network:api.example.com" in found["capabilities_added"].message
    assert "profile.read:attributes.first_name" in found["capabilities_removed"].message


# -- the pipeline -------------------------------------------------------------


def test_pipeline_on_a_good_gear_without_sandbox(vet_ctx):
    findings = run_checks(vet_ctx())
    assert {f["severity"] for f in findings if f["code"] != "sandbox_unavailable"} == {"info"}
    assert all(f["check"] for f in findings)


def test_a_check_that_raises_becomes_scanner_error(vet_ctx):
    def broken(_ctx):
        raise RuntimeError("boom")

    findings = run_checks(vet_ctx(), [("archive", check_archive), ("broken", broken)])
    assert codes(findings) == ["archive_ok", "scanner_error"]
    assert findings[1]["severity"] == "high" and "boom" in findings[1]["message"]
    assert findings[1]["check"] == "broken"


def test_every_code_a_check_uses_is_catalogued():
    import ast
    import inspect

    from marketplace.vetting import checks as pkg

    used: set[str] = set()
    for mod in (pkg.static, pkg.host, pkg.files, pkg.hooks, pkg.secrets, pkg.package,
                pkg.dynamic):
        for node in ast.walk(ast.parse(inspect.getsource(mod))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and node.value in CODES:
                used.add(node.value)
    assert {"archive_ok", "hook_not_implemented", "raw_network", "secret_generic",
            "sandbox_ok", "dynamic_patch_refused"} <= used
    assert next(name for name, _ in CHECKS) == "archive"


def test_the_docs_list_every_finding_code(repo_root):
    listed = (repo_root / "docs" / "finding-codes.md").read_text()
    missing = [code for code in CODES if f"`{code}`" not in listed]
    assert missing == [], "run `python -m marketplace.docgen`"
    guide = (repo_root / "docs" / "admin-guide.md").read_text()
    assert "finding-codes.md" in guide
