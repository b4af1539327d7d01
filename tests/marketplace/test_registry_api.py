"""The registry API through Flask's test client, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import io
from typing import Any

import pytest
from sqlalchemy import func, select

from marketplace.models import AuditEntry, GearVersion


@pytest.fixture
def actors(make_user, make_publisher, make_token) -> dict[str, Any]:
    dev = make_user(role="developer", email="dev@acme.test")
    other = make_user(role="developer", email="dev@globex.test")
    admin = make_user(role="admin", email="admin@gears.test")
    make_publisher(name="acme", owner=dev)
    make_publisher(name="globex", owner=other)
    return {
        "dev": {"Authorization": f"Bearer {make_token(dev, ['publish:acme', 'read'])}"},
        "other": {"Authorization": f"Bearer {make_token(other, ['publish:globex'])}"},
        "admin": {"Authorization": f"Bearer {make_token(admin, ['admin'])}"},
        "readonly": {"Authorization": f"Bearer {make_token(dev, ['read'])}"},
    }


def upload(client, headers, data: bytes, filename: str = "g.gear"):
    return client.post("/api/v1/gears", headers=headers,
                       data={"file": (io.BytesIO(data), filename)},
                       content_type="multipart/form-data")


def test_publish_then_review_then_download(client, actors, make_gear_archive, session):
    data = make_gear_archive("acme/hello", "1.0.0")
    resp = upload(client, actors["dev"], data)
    assert resp.status_code == 201, resp.json
    body = resp.json
    assert body["status"] == "pending"
    assert body["sha256"] == hashlib.sha256(data).hexdigest()
    assert resp.headers["Location"].endswith("/api/v1/gears/acme/hello/1.0.0")

    # Pending versions are invisible to the public, visible to the publisher.
    assert client.get("/api/v1/gears?q=hello").json["total"] == 0
    assert client.get("/api/v1/gears/acme/hello/1.0.0").status_code == 404
    assert client.get("/api/v1/gears/acme/hello/1.0.0", headers=actors["dev"]).status_code == 200

    resp = client.post("/api/v1/admin/gears/acme/hello/1.0.0/approve", headers=actors["admin"])
    assert resp.status_code == 200 and resp.json["status"] == "approved"

    listing = client.get("/api/v1/gears?q=hello").json
    assert [g["name"] for g in listing["items"]] == ["acme/hello"]
    assert listing["items"][0]["latest_version"] == "1.0.0"

    dl = client.get("/api/v1/gears/acme/hello/1.0.0/download")
    assert dl.status_code == 200
    assert dl.data == data
    assert dl.headers["X-Gears-Sha256"] == body["sha256"]

    actions = session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)).all()
    assert "version.publish" in actions and "version.approve" in actions


def test_same_version_twice_is_409_even_with_identical_bytes(client, actors, make_gear_archive):
    data = make_gear_archive("acme/hello", "1.0.0")
    assert upload(client, actors["dev"], data).status_code == 201
    resp = upload(client, actors["dev"], data)
    assert resp.status_code == 409
    assert resp.json["error"]["code"] == "version_exists"


@pytest.mark.parametrize(("first", "second"), [
    ("0.1.0", "0.1.0+build.2"),
    ("0.1.0+build.1", "0.1.0"),
    ("0.1.0+a", "0.1.0+b"),
    ("1.0.0-rc.1", "1.0.0-rc.1+x"),
])
def test_build_metadata_never_makes_another_version(client, actors, make_gear_archive, session,
                                                    first, second):
    assert upload(client, actors["dev"], make_gear_archive("acme/hello", first)).status_code == 201
    resp = upload(client, actors["dev"], make_gear_archive("acme/hello", second,
                                                           summary="other bytes"))
    assert resp.status_code == 409, resp.json
    assert resp.json["error"]["code"] == "version_exists"
    assert session.scalars(select(GearVersion.version)).all() == [first]


def test_versions_that_differ_in_precedence_are_distinct(client, actors, make_gear_archive):
    for version in ("1.0.0-rc.1", "1.0.0-rc.2", "1.0.0", "1.0.1+build.7"):
        resp = upload(client, actors["dev"], make_gear_archive("acme/hello", version))
        assert resp.status_code == 201, (version, resp.json)


def test_the_database_itself_keeps_one_row_per_precedence(client, actors, make_gear_archive,
                                                         session):
    from sqlalchemy.exc import IntegrityError

    assert upload(client, actors["dev"], make_gear_archive("acme/hello", "0.1.0")).status_code \
        == 201
    first = session.scalars(select(GearVersion)).one()
    session.add(GearVersion(gear_id=first.gear_id, version="0.1.0+build.9", sha256="0" * 64,
                            size=1, manifest=first.manifest, uploaded_by_id=None))
    with pytest.raises(IntegrityError):
        session.commit()
    session.rollback()


def test_other_namespace_is_403(client, actors, make_gear_archive, session):
    data = make_gear_archive("globex/thing", "1.0.0")
    resp = upload(client, actors["dev"], data)
    assert resp.status_code == 403
    assert resp.json["error"]["code"] == "forbidden"
    assert session.scalar(select(func.count()).select_from(GearVersion)) == 0


def test_scope_without_publish_is_403(client, actors, make_gear_archive):
    resp = upload(client, actors["readonly"], make_gear_archive("acme/hello", "1.0.0"))
    assert resp.status_code == 403


def test_anonymous_publish_is_401(client, make_gear_archive):
    resp = upload(client, {}, make_gear_archive())
    assert resp.status_code == 401
    assert resp.json["error"]["code"] == "unauthorized"


def test_invalid_manifest_lists_every_problem(client, actors, make_gear_dir, session):
    import zipfile

    gear_dir = make_gear_dir("acme/bad", "1.0.0")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("gear.json", '{"name": "acme/bad", "version": "1.0", "kind": "widget", '
                    '"title": "x", "summary": "y", "entrypoint": "bad", "hooks": ["gear_render"], '
                    '"engine": ">=1.0.0", "colour": "red"}')
        zf.write(gear_dir / "bad.py", "bad.py")
    resp = upload(client, actors["dev"], buf.getvalue())
    assert resp.status_code == 422
    err = resp.json["error"]
    assert err["code"] == "invalid_manifest"
    paths = {d["path"] for d in err["details"]}
    assert {"$.version", "$.kind", "$"} <= paths
    assert session.scalar(select(func.count()).select_from(GearVersion)) == 0


def test_unsafe_archive_is_400_with_reason(client, actors):
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("../evil.py", "x = 1")
    resp = upload(client, actors["dev"], buf.getvalue())
    assert resp.status_code == 400
    assert resp.json["error"]["code"] == "invalid_archive"
    assert resp.json["error"]["details"][0]["code"] == "path_traversal"


def test_missing_file_field(client, actors):
    resp = client.post("/api/v1/gears", headers=actors["dev"], data={},
                       content_type="multipart/form-data")
    assert resp.status_code == 400
    assert resp.json["error"]["code"] == "missing_file"


def test_yank_hides_from_listing_but_not_exact_download(client, actors, make_gear_archive):
    data = make_gear_archive("acme/hello", "1.0.0")
    upload(client, actors["dev"], data)
    client.post("/api/v1/admin/gears/acme/hello/1.0.0/approve", headers=actors["admin"])

    resp = client.post("/api/v1/gears/acme/hello/1.0.0/yank", headers=actors["dev"], json={})
    assert resp.status_code == 422 and resp.json["error"]["code"] == "reason_required"
    resp = client.post("/api/v1/gears/acme/hello/1.0.0/yank", headers=actors["other"],
                       json={"reason": "not yours"})
    assert resp.status_code == 403

    resp = client.post("/api/v1/gears/acme/hello/1.0.0/yank", headers=actors["dev"],
                       json={"reason": "broken config default"})
    assert resp.status_code == 200
    assert resp.json["yanked"] is True and resp.json["yank_reason"] == "broken config default"

    assert client.get("/api/v1/gears?q=hello").json["total"] == 0
    assert client.get("/api/v1/gears/acme/hello/1.0.0").json["yanked"] is True
    assert client.get("/api/v1/gears/acme/hello/1.0.0/download").data == data

    # Immutable even after a yank.
    assert upload(client, actors["dev"], data).status_code == 409

    resp = client.post("/api/v1/gears/acme/hello/1.0.0/unyank", headers=actors["dev"])
    assert resp.status_code == 200 and resp.json["yanked"] is False
    assert client.get("/api/v1/gears?q=hello").json["total"] == 1


def test_reject_needs_reason_and_publisher_sees_it(client, actors, make_gear_archive):
    upload(client, actors["dev"], make_gear_archive("acme/hello", "1.0.0"))
    resp = client.post("/api/v1/admin/gears/acme/hello/1.0.0/reject", headers=actors["admin"])
    assert resp.status_code == 422
    resp = client.post("/api/v1/admin/gears/acme/hello/1.0.0/reject", headers=actors["admin"],
                       json={"reason": "README is empty"})
    assert resp.status_code == 200 and resp.json["status"] == "rejected"
    seen = client.get("/api/v1/gears/acme/hello/1.0.0", headers=actors["dev"]).json
    assert seen["review_reason"] == "README is empty"
    # A decided version cannot be reviewed again.
    again = client.post("/api/v1/admin/gears/acme/hello/1.0.0/approve", headers=actors["admin"])
    assert again.status_code == 409


def test_only_admins_review(client, actors, make_gear_archive):
    upload(client, actors["dev"], make_gear_archive("acme/hello", "1.0.0"))
    resp = client.post("/api/v1/admin/gears/acme/hello/1.0.0/approve", headers=actors["dev"])
    assert resp.status_code == 403


def test_search_filters_and_pagination(client, actors, make_gear_archive):
    for name, kind in [("acme/banner", "template"), ("acme/scorer", "extension"),
                       ("acme/footer", "template")]:
        upload(client, actors["dev"], make_gear_archive(name, "1.0.0", kind))
        client.post(f"/api/v1/admin/gears/{name}/1.0.0/approve", headers=actors["admin"])
    assert client.get("/api/v1/gears?kind=template").json["total"] == 2
    assert client.get("/api/v1/gears?kind=extension").json["items"][0]["name"] == "acme/scorer"
    page = client.get("/api/v1/gears?per_page=2&page=2").json
    assert page["total"] == 3 and len(page["items"]) == 1
    assert client.get("/api/v1/gears?category=testing").json["total"] == 3
    assert client.get("/api/v1/gears?publisher=globex").json["total"] == 0
    bad = client.get("/api/v1/gears?per_page=0")
    assert bad.status_code == 422 and bad.json["error"]["details"][0]["path"] == "per_page"
    assert client.get("/api/v1/gears?kind=widget").status_code == 422
    # Wildcard characters in q are literal, and punctuation alone matches no word.
    assert client.get("/api/v1/gears?q=ban_er").json["total"] == 0
    assert client.get("/api/v1/gears?q=ban").json["items"][0]["name"] == "acme/banner"
    assert client.get("/api/v1/gears?q=%25").json["total"] == 3


def test_gear_detail_lists_versions_newest_first(client, actors, make_gear_archive):
    for version in ["1.0.0", "1.10.0", "1.2.0"]:
        upload(client, actors["dev"], make_gear_archive("acme/hello", version))
        client.post(f"/api/v1/admin/gears/acme/hello/{version}/approve", headers=actors["admin"])
    body = client.get("/api/v1/gears/acme/hello").json
    assert [v["version"] for v in body["versions"]] == ["1.10.0", "1.2.0", "1.0.0"]
    assert body["latest_version"] == "1.10.0"
    assert client.get("/api/v1/gears/acme/nothing").status_code == 404


def test_kind_cannot_change(client, actors, make_gear_archive):
    upload(client, actors["dev"], make_gear_archive("acme/hello", "1.0.0", "template"))
    resp = upload(client, actors["dev"], make_gear_archive("acme/hello", "1.1.0", "extension"))
    assert resp.status_code == 422 and resp.json["error"]["code"] == "kind_changed"


def test_storage_failure_leaves_no_version(app, client, actors, make_gear_archive, session):
    from marketplace.storage import StorageError

    class BrokenStore:
        def put(self, sha256, data):
            raise StorageError("disk full")

    app.extensions["gears_storage"] = BrokenStore()
    resp = upload(client, actors["dev"], make_gear_archive("acme/hello", "1.0.0"))
    assert resp.status_code == 503
    assert resp.json["error"]["code"] == "storage_unavailable"
    assert "nothing was published" in resp.json["error"]["message"]
    assert session.scalar(select(func.count()).select_from(GearVersion)) == 0
