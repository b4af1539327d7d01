"""Engine fixtures: people and tokens, publishing through the registry API, installing
through the workspaces service, and one sandboxed runtime per test module."""

from __future__ import annotations

import io
import json
import shutil
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from gears_sdk.archive import build_archive_bytes
from marketplace.runtime import Runtime
from marketplace.runtime.sandbox import default_min_level, level_rank, probe_sandbox_level

EXAMPLES = Path(__file__).resolve().parents[3] / "example_gears"


def sandbox_problem() -> str | None:
    """Why real workers cannot run here at the level the runtime requires, or ``None``."""
    report = probe_sandbox_level()
    need = default_min_level()
    if level_rank(report.level) < level_rank(need):
        return (f"the sandbox reaches {report.level!r} here but {need!r} is required "
                f"({'; '.join(report.notes)})")
    return None


@pytest.fixture(scope="module")
def engine_runtime() -> Iterator[Runtime]:
    """One runtime for the module's tests; the operator lets gears reach 127.0.0.1."""
    problem = sandbox_problem()
    if problem:
        pytest.skip(problem)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GEARS_HTTP_ALLOW_PRIVATE_HOSTS", "127.0.0.1")
        runtime = Runtime()
    yield runtime
    runtime.close()


@pytest.fixture
def engine_app(app: Flask, engine_runtime: Runtime) -> Iterator[Flask]:
    """The app with its engine on the module's runtime; its workers stop afterwards."""
    from marketplace.engine import get_engine, shutdown

    get_engine(app).attach_runtime(engine_runtime)
    yield app
    shutdown(app)


@pytest.fixture
def people(make_user, make_publisher, make_workspace, make_token) -> dict[str, Any]:
    dev = make_user(role="developer")
    admin = make_user(role="admin")
    member = make_user(role="business")
    outsider = make_user(role="business")
    make_publisher(name="acme", owner=dev)
    ws = make_workspace(member=member, name="shop")
    other = make_workspace(member=outsider, name="other")
    return {
        "dev": dev, "admin": admin, "member": member, "outsider": outsider, "ws": ws,
        "other": other,
        "publish_token": make_token(dev, ["publish:acme"]),
        "admin_token": make_token(admin, ["admin"]),
        "ws_token": make_token(member, ["workspace:shop"]),
        "other_token": make_token(outsider, ["workspace:other"]),
    }


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def write_gear(root: Path, name: str, kind: str, hooks: list[str], source: str, *,
               read: list[str] | None = None, write: list[str] | None = None,
               network: list[str] | None = None, config_schema: dict[str, Any] | None = None,
               timeout_ms: int = 1000, permissions: dict[str, Any] | None = None) -> Path:
    """A gear directory whose package is ``source`` (dedented); ``permissions`` adds to the
    network and profile ones (``catalog``, ``events``, ``secrets``)."""
    module = name.split("/", 1)[1].replace("-", "_")
    gear_dir = root / name.replace("/", "__")
    (gear_dir / module).mkdir(parents=True)
    (gear_dir / module / "__init__.py").write_text(textwrap.dedent(source))
    (gear_dir / "README.md").write_text(f"# {name}\n\nA gear of the engine tests.\n")
    manifest = {
        "name": name, "version": "1.0.0", "kind": kind, "title": name.split("/")[1].title(),
        "summary": f"A {kind} written by the engine tests.", "entrypoint": module,
        "hooks": hooks, "engine": ">=1.0.0 <2.0.0",
        "permissions": {"network": network or [],
                        "profile": {"read": read or [], "write": write or []},
                        **(permissions or {})},
        "limits": {"memory_mb": 128, "timeout_ms": timeout_ms},
        "config_schema": config_schema or {"type": "object", "properties": {}},
        "license": "MIT", "readme": "README.md",
    }
    (gear_dir / "gear.json").write_text(json.dumps(manifest, indent=2))
    return gear_dir


@pytest.fixture
def publish(client, people, tmp_path) -> Callable[[Path], str]:
    """``publish(gear_dir)`` uploads and approves the gear through the registry API."""

    def run(gear_dir: Path) -> str:
        if not (gear_dir / "gear.json").exists():
            raise AssertionError(f"{gear_dir} is not a gear")
        copy = tmp_path / "src" / gear_dir.name
        if gear_dir.is_relative_to(EXAMPLES):
            shutil.copytree(gear_dir, copy, ignore=shutil.ignore_patterns("tests", "__pycache__"))
            gear_dir = copy
        data, _ = build_archive_bytes(gear_dir)
        manifest = json.loads((gear_dir / "gear.json").read_text())
        resp = client.post("/api/v1/gears", headers=auth(people["publish_token"]),
                           data={"file": (io.BytesIO(data), "gear.gear")},
                           content_type="multipart/form-data")
        assert resp.status_code == 201, resp.get_json()
        name, version = manifest["name"], manifest["version"]
        resp = client.post(f"/api/v1/admin/gears/{name}/{version}/approve",
                           headers=auth(people["admin_token"]), json={})
        assert resp.status_code == 200, resp.get_json()
        return name

    return run


@pytest.fixture
def install(session, people) -> Callable[..., str]:
    """``install(name, config=None)`` installs into ``shop`` through the service; the id."""
    from marketplace.workspaces import install as do_install

    def run(name: str, config: dict[str, Any] | None = None) -> str:
        inst = do_install(session, people["ws"], name, config=config or {}, consent=True,
                          actor=people["member"])
        return inst.id

    return run
