"""Signing on approval and verification at every load: the registry signs
{name, version, sha256, files}; the runtime refuses anything that does not match."""

from __future__ import annotations

import base64
import os
import stat

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from marketplace.registry.signing import KeyRing
from marketplace.runtime.loader import GearCache, LoaderError
from marketplace.runtime.signatures import (
    SignedManifest,
    canonical_json,
    key_id,
    public_keys_from_json,
    verified_load,
)
from tests.marketplace.vetting.conftest import upload


@pytest.fixture
def approved(client, actors, make_gear_archive):
    """An approved acme/hello 1.0.0: (archive bytes, version JSON, trusted keys)."""
    data = make_gear_archive("acme/hello", "1.0.0")
    assert upload(client, actors["dev"], data).status_code == 201
    resp = client.post("/api/v1/admin/gears/acme/hello/1.0.0/approve", headers=actors["admin"])
    assert resp.status_code == 200
    body = client.get("/api/v1/gears/acme/hello/1.0.0").json
    keys = public_keys_from_json(client.get("/api/v1/keys").json)
    return data, body, keys


class Bytes:
    """A fetcher serving one archive (the registry's bytes)."""

    def __init__(self, data: bytes):
        self.data = data

    def fetch(self, name, version, sha256):
        return self.data


def _writable(path):
    os.chmod(path.parent, 0o755)
    if path.exists():
        os.chmod(path, 0o644)


def test_approval_signs_the_canonical_manifest(approved):
    _data, body, keys = approved
    assert body["key_id"] in keys and len(body["key_id"]) == 16
    signed = SignedManifest.from_version_json(body)
    assert set(signed.files) == {"gear.json", "hello.py", "README.md"}
    message = canonical_json({"name": "acme/hello", "version": "1.0.0",
                              "sha256": body["sha256"], "files": body["files"]})
    keys[body["key_id"]].verify(base64.b64decode(body["signature"]), message)
    signed.verify(keys)


def test_runtime_loads_a_verified_gear(approved, tmp_path):
    data, body, keys = approved
    cache = GearCache(tmp_path / "cache", Bytes(data))
    path = verified_load(cache, SignedManifest.from_version_json(body), keys)
    assert (path / "hello.py").is_file()
    # and again, from the cache, re-verified
    assert verified_load(cache, SignedManifest.from_version_json(body), keys) == path


@pytest.mark.parametrize("change", ["modified", "extra", "missing"])
def test_a_tampered_cache_entry_is_refused_at_load(approved, tmp_path, change):
    data, body, keys = approved
    cache = GearCache(tmp_path / "cache", Bytes(data))
    signed = SignedManifest.from_version_json(body)
    root = verified_load(cache, signed, keys)
    target = root / ("evil.py" if change == "extra" else "hello.py")
    _writable(target)
    if change == "modified":
        target.write_text("import os\nos.system('id')\n")
    elif change == "extra":
        target.write_text("print('hi')\n")
    else:
        target.unlink()
    with pytest.raises(LoaderError) as err:
        verified_load(cache, signed, keys)
    assert err.value.code == "tampered"
    assert err.value.files[change] == [target.name]


def test_a_tampered_cache_marker_does_not_help(approved, tmp_path):
    """Rewriting the marker's hashes to match a modified file is still caught: the
    reference is the signed list, not the marker next to the files."""
    import hashlib
    import json

    from marketplace.runtime.loader import MARKER

    data, body, keys = approved
    cache = GearCache(tmp_path / "cache", Bytes(data))
    root = verified_load(cache, SignedManifest.from_version_json(body), keys)
    _writable(root / "hello.py")
    (root / "hello.py").write_text("evil = True\n")
    marker = json.loads((root / MARKER).read_text())
    marker["files"]["hello.py"] = hashlib.sha256(b"evil = True\n").hexdigest()
    _writable(root / MARKER)
    (root / MARKER).write_text(json.dumps(marker))
    cache.verify_tree(body["sha256"])  # the marker alone is fooled
    with pytest.raises(LoaderError) as err:
        verified_load(cache, SignedManifest.from_version_json(body), keys)
    assert err.value.code == "tampered"


def test_wrong_signature_unknown_key_and_forged_files_are_refused(approved, tmp_path):
    data, body, keys = approved
    cache = GearCache(tmp_path / "cache", Bytes(data))
    good = SignedManifest.from_version_json(body)
    other = Ed25519PrivateKey.generate()
    forged_sig = base64.b64encode(other.sign(good.message())).decode()
    cases = {
        "bad_signature": SignedManifest(**{**good.__dict__, "signature": forged_sig}),
        "unknown_key": SignedManifest(**{**good.__dict__, "key_id": key_id(other.public_key()),
                                         "signature": forged_sig}),
        "unsigned": SignedManifest(**{**good.__dict__, "signature": None}),
    }
    forged_files = dict(good.files, **{"hello.py": "0" * 64})
    cases["bad_signature "] = SignedManifest(**{**good.__dict__, "files": forged_files})
    for code, signed in cases.items():
        with pytest.raises(LoaderError) as err:
            verified_load(cache, signed, keys)
        assert err.value.code == code.strip(), code
    assert not cache.has(good.sha256)  # nothing was even fetched


def test_load_keeps_its_old_signature_and_checks_the_signed_names(approved, tmp_path):
    data, body, keys = approved
    cache = GearCache(tmp_path / "cache", Bytes(data))
    signed = SignedManifest.from_version_json(body)
    assert cache.load("acme/hello", "1.0.0", body["sha256"]).is_dir()  # unsigned API intact
    with pytest.raises(LoaderError) as err:
        cache.load("acme/other", "1.0.0", body["sha256"], signed=signed, public_keys=keys)
    assert err.value.code == "manifest_mismatch"


# -- keys ---------------------------------------------------------------------


def test_init_creates_the_key_once_with_private_mode(runner, app):
    first = runner.invoke("init")
    assert first.exit_code == 0, first.output
    assert "signing key" in first.output
    ring = KeyRing(os.path.join(app.config["INSTANCE_PATH"], "signing"))
    kid = ring.current_id()
    key_file = ring.dir / f"{kid}.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    again = runner.invoke("init")
    assert again.exit_code == 0 and kid in again.output and ring.current_id() == kid


def test_rotation_keeps_old_signatures_valid(approved, runner, client, actors,
                                             make_gear_archive, tmp_path):
    _data, body, _keys = approved
    old = body["key_id"]
    result = runner.invoke("rotate-key")
    assert result.exit_code == 0 and f"retired {old}" in result.output
    listed = client.get("/api/v1/keys").json["keys"]
    assert listed[0]["current"] and listed[0]["key_id"] != old
    assert {k["key_id"] for k in listed} >= {old}
    keys = public_keys_from_json({"keys": listed})
    SignedManifest.from_version_json(body).verify(keys)  # signed before the rotation
    assert upload(client, actors["dev"], make_gear_archive("acme/hello", "1.1.0")).status_code \
        == 201
    client.post("/api/v1/admin/gears/acme/hello/1.1.0/approve", headers=actors["admin"])
    newer = client.get("/api/v1/gears/acme/hello/1.1.0").json
    assert newer["key_id"] == listed[0]["key_id"]
    SignedManifest.from_version_json(newer).verify(keys)


def test_a_key_document_cannot_pass_off_a_key_under_another_id():
    key = Ed25519PrivateKey.generate().public_key()
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    raw = base64.b64encode(key.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()
    with pytest.raises(LoaderError):
        public_keys_from_json({"keys": [{"key_id": "0" * 16, "algorithm": "ed25519",
                                         "public_key": raw}]})
