"""Fixtures for the vetting tests: archives from source snippets, a context, actors."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pytest

from gears_sdk.archive import read_archive
from marketplace.vetting.context import SandboxOptions, VetContext

NO_SANDBOX = SandboxOptions(enabled=False)


@pytest.fixture
def vet_ctx(make_gear_archive) -> Callable[..., VetContext]:
    """``vet_ctx(module_source=..., extra_files=..., previous=None, **manifest)`` → a context."""

    def make(*args: Any, previous: dict[str, Any] | None = None,
             sandbox: SandboxOptions = NO_SANDBOX, **kwargs: Any) -> VetContext:
        archive = read_archive(make_gear_archive(*args, **kwargs))
        return VetContext(archive=archive, previous_manifest=previous,
                          previous_version="0.9.0" if previous else None, sandbox=sandbox)

    return make


def codes(findings: Any) -> list[str]:
    return [f.code if hasattr(f, "code") else f["code"] for f in findings]


@pytest.fixture
def actors(make_user, make_publisher, make_token) -> dict[str, Any]:
    dev = make_user(role="developer", email="dev@acme.test")
    admin = make_user(role="admin", email="admin@gears.test")
    publisher = make_publisher(name="acme", owner=dev)
    return {
        "dev_user": dev, "admin_user": admin, "publisher": publisher,
        "dev": {"Authorization": f"Bearer {make_token(dev, ['publish:acme', 'read'])}"},
        "admin": {"Authorization": f"Bearer {make_token(admin, ['admin'])}"},
    }


def upload(client, headers, data: bytes):
    return client.post("/api/v1/gears", headers=headers,
                       data={"file": (io.BytesIO(data), "g.gear")},
                       content_type="multipart/form-data")
