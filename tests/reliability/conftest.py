"""Fixtures of the reliability suite: one registry per module, with its accounts and tokens."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

# The runtime's fixtures (gear directories, installations, runtimes), for the worker faults.
from tests.marketplace.runtime.conftest import (  # noqa: F401
    installation,
    make_gear,
    runtime_factory,
)


@dataclass
class Registry:
    """A migrated app plus the people and tokens most tests need."""

    app: Flask
    blob_dir: Path
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def client(self) -> FlaskClient:
        return self.app.test_client()

    def headers(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"} if who in self.tokens else {}

    def publish(self, data: bytes, who: str = "dev", client: FlaskClient | None = None) -> Any:
        return (client or self.client).post(
            "/api/v1/gears", headers=self.headers(who),
            data={"file": (io.BytesIO(data), "upload.gear")}, content_type="multipart/form-data")

    def count(self, model: Any) -> int:
        from sqlalchemy import func, select

        from marketplace.db import database

        with database(self.app).sessionmaker() as s:
            return int(s.scalar(select(func.count()).select_from(model)) or 0)

    def blobs(self) -> list[str]:
        from marketplace.blobs import get_blob_store

        return [b.sha256 for b in get_blob_store(self.app).iter_blobs()]


def build_registry(db_url: str, workdir: Path, **config: Any) -> Registry:
    """An app on ``db_url`` with blobs under ``workdir``, and the standard accounts:

    ``dev`` (publish:acme), ``other_dev`` (publish:globex), ``admin``, ``business``
    (workspace:shop) and ``other_business`` (workspace:mall)."""
    from marketplace import create_app
    from marketplace.accounts import (
        create_publisher,
        create_token,
        create_user,
        create_workspace,
    )
    from marketplace.blobs import get_blob_store
    from marketplace.db import database, upgrade

    blob_dir = workdir / "blobs"
    app = create_app({
        "TESTING": True, "DATABASE_URL": db_url, "STORAGE_URL": f"file://{blob_dir}",
        "SECRET_KEY": "reliability-secret", "INSTANCE_PATH": str(workdir / "instance"),
        # Tests send many bad tokens from one address on purpose; the limiter has its own test.
        "TOKEN_FAILURE_LIMIT": 1_000_000,
        **config,
    })
    upgrade(app)
    get_blob_store(app).ensure()
    reg = Registry(app, blob_dir)
    with database(app).sessionmaker() as s:
        dev = create_user(s, "dev@acme.test", "developer")
        other = create_user(s, "dev@globex.test", "developer")
        admin = create_user(s, "admin@gears.test", "admin")
        biz = create_user(s, "biz@shop.test", "business")
        other_biz = create_user(s, "biz@mall.test", "business")
        create_publisher(s, "acme", dev.email)
        create_publisher(s, "globex", other.email)
        create_workspace(s, "shop", biz.email)
        create_workspace(s, "mall", other_biz.email)
        s.flush()
        for who, user, scopes in [("dev", dev, ["publish:acme"]),
                                  ("other_dev", other, ["publish:globex"]),
                                  ("admin", admin, ["admin"]),
                                  ("business", biz, ["workspace:shop"]),
                                  ("other_business", other_biz, ["workspace:mall"]),
                                  ("dev_read", dev, ["read"])]:
            reg.tokens[who], _ = create_token(s, user, scopes, name=who)
        s.commit()
    return reg


@pytest.fixture(scope="module")
def clean_env() -> Iterator[None]:
    """The developer's own GEARS_ settings must not leak into module-scoped apps."""
    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if name.startswith("GEARS_") and not name.startswith("GEARS_TEST_"):
                mp.delenv(name)
        yield


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, clean_env: None) -> Iterator[Registry]:
    """One SQLite registry shared by a module's tests."""
    from marketplace.db import database

    workdir = tmp_path_factory.mktemp("registry")
    reg = build_registry(f"sqlite:///{workdir / 'registry.db'}", workdir)
    yield reg
    database(reg.app).engine.dispose()
