"""Blob storage: one contract, both backends (a local directory and a real S3 endpoint)."""

from __future__ import annotations

import hashlib
import io
import os
import socket
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError, NoCredentialsError

from marketplace.storage import (
    BlobInfo,
    BlobNotFound,
    BlobStore,
    IntegrityError,
    InvalidDigest,
    LocalBlobStore,
    S3BlobStore,
    StorageError,
    StorageUnavailable,
    open_blob_store,
)
from tests.fixtures.s3 import s3_client


def blob(content: bytes) -> tuple[str, bytes]:
    return hashlib.sha256(content).hexdigest(), content


SHA, DATA = blob(b"PK\x03\x04 a gear archive " * 100)
OTHER_SHA, OTHER_DATA = blob(b"another gear")
MISSING_SHA = hashlib.sha256(b"never stored").hexdigest()

BAD_DIGESTS = [
    "../../etc/passwd",
    "../" + SHA[3:],
    SHA.upper(),
    SHA[:63],
    SHA + "0",
    SHA[:63] + "g",
    SHA[:62] + "/x",
    SHA + "\n",
    "",
    None,
]


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "local":
        local = LocalBlobStore(tmp_path / "blobs")
        local.ensure()
        return local
    endpoint = request.getfixturevalue("s3_server")
    bucket = request.getfixturevalue("s3_bucket")
    return S3BlobStore(bucket, "blobs", endpoint_url=endpoint)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fast_fail_config() -> Config:
    return Config(connect_timeout=1, read_timeout=1, retries={"max_attempts": 1})


# -- the contract ---------------------------------------------------------


def test_put_then_read_back(store: BlobStore) -> None:
    assert not store.exists(SHA)
    store.put(SHA, DATA)
    assert store.exists(SHA)
    assert store.read(SHA) == DATA
    assert store.size(SHA) == len(DATA)
    with store.open(SHA) as stream:
        assert stream.read(4) == b"PK\x03\x04"
        assert stream.read() == DATA[4:]
    assert store.verify(SHA)


def test_put_streams_a_file_object(store: BlobStore) -> None:
    # Bigger than the in-memory spool, so the upload goes through a file on disk.
    sha, data = blob(os.urandom(5 * 1024 * 1024 + 17))
    store.put(sha, io.BytesIO(data))
    assert store.size(sha) == len(data)
    assert hashlib.sha256(store.read(sha)).hexdigest() == sha


def test_put_is_idempotent(store: BlobStore) -> None:
    store.put(SHA, DATA)
    store.put(SHA, io.BytesIO(DATA))
    assert store.read(SHA) == DATA
    assert [info.sha256 for info in store.iter_blobs()] == [SHA]


def test_wrong_hash_is_refused_and_leaves_nothing(store: BlobStore) -> None:
    with pytest.raises(IntegrityError) as excinfo:
        store.put(SHA, OTHER_DATA)
    assert excinfo.value.code == "integrity_error"
    assert SHA in excinfo.value.message and OTHER_SHA in excinfo.value.message
    assert not store.exists(SHA)
    assert not store.exists(OTHER_SHA)
    assert list(store.iter_blobs()) == []
    if isinstance(store, LocalBlobStore):
        assert list(store.tmp_dir.iterdir()) == []


def test_wrong_hash_does_not_touch_an_existing_blob(store: BlobStore) -> None:
    store.put(SHA, DATA)
    with pytest.raises(IntegrityError):
        store.put(SHA, io.BytesIO(OTHER_DATA))
    assert store.read(SHA) == DATA


def test_missing_blob(store: BlobStore) -> None:
    assert not store.exists(MISSING_SHA)
    assert not store.verify(MISSING_SHA)
    for operation in (store.open, store.read, store.size):
        with pytest.raises(BlobNotFound) as excinfo:
            operation(MISSING_SHA)
        assert excinfo.value.code == "not_found"
        assert MISSING_SHA in str(excinfo.value)
    store.delete(MISSING_SHA)  # deleting a missing blob is fine


def test_delete(store: BlobStore) -> None:
    store.put(SHA, DATA)
    store.put(OTHER_SHA, OTHER_DATA)
    store.delete(SHA)
    assert not store.exists(SHA)
    assert store.exists(OTHER_SHA)
    store.delete(SHA)


def test_iter_blobs(store: BlobStore) -> None:
    before = datetime.now(UTC) - timedelta(seconds=5)
    store.put(SHA, DATA)
    store.put(OTHER_SHA, OTHER_DATA)
    infos = sorted(store.iter_blobs(), key=lambda info: info.sha256)
    assert [(i.sha256, i.size) for i in infos] == sorted(
        [(SHA, len(DATA)), (OTHER_SHA, len(OTHER_DATA))]
    )
    for info in infos:
        assert isinstance(info, BlobInfo)
        assert info.modified.tzinfo is not None
        assert info.modified.utcoffset() == timedelta(0)
        assert before <= info.modified <= datetime.now(UTC) + timedelta(seconds=5)


@pytest.mark.parametrize("bad", BAD_DIGESTS)
def test_invalid_digests_are_refused_everywhere(
    store: BlobStore, bad: object, tmp_path: Path
) -> None:
    before = sorted(tmp_path.rglob("*"))
    calls = [
        lambda: store.put(bad, DATA),  # type: ignore[arg-type]
        lambda: store.exists(bad),  # type: ignore[arg-type]
        lambda: store.open(bad),  # type: ignore[arg-type]
        lambda: store.read(bad),  # type: ignore[arg-type]
        lambda: store.size(bad),  # type: ignore[arg-type]
        lambda: store.delete(bad),  # type: ignore[arg-type]
        lambda: store.verify(bad),  # type: ignore[arg-type]
        lambda: store.presigned_url(bad),  # type: ignore[arg-type]
    ]
    for call in calls:
        with pytest.raises(InvalidDigest) as excinfo:
            call()
        assert isinstance(excinfo.value, ValueError)
        assert isinstance(excinfo.value, StorageError)
        assert excinfo.value.code == "invalid_sha256"
    assert sorted(tmp_path.rglob("*")) == before
    assert list(store.iter_blobs()) == []


def test_verify_detects_damaged_bytes(store: BlobStore) -> None:
    store.put(SHA, DATA)
    if isinstance(store, LocalBlobStore):
        store.path_for(SHA).write_bytes(DATA[:-1] + b"!")
    else:
        assert isinstance(store, S3BlobStore)
        store.client.put_object(Bucket=store.bucket, Key=store.key_for(SHA), Body=b"damaged")
    assert not store.verify(SHA)
    store.put(SHA, DATA)  # putting it again repairs it
    assert store.verify(SHA)


def test_check_passes_on_a_healthy_store(store: BlobStore) -> None:
    store.check()
    store.ensure()  # idempotent
    store.check()


# -- local backend ----------------------------------------------------------


def test_local_layout_and_description(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    store.ensure()
    store.put(SHA, DATA)
    assert (tmp_path / "blobs" / SHA[:2] / SHA[2:4] / SHA).read_bytes() == DATA
    assert store.description == (tmp_path / "blobs").as_uri()
    assert store.presigned_url(SHA) is None
    assert store.presigned_url(SHA, expires=60, filename="x.gear") is None


def test_local_iter_blobs_ignores_strays(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    store.ensure()
    store.put(SHA, DATA)
    (tmp_path / "README").write_text("not a blob")
    (tmp_path / SHA[:2] / SHA[2:4] / (OTHER_SHA)).write_bytes(b"misfiled")
    (store.tmp_dir / "half-written.part").write_bytes(b"partial")
    assert [info.sha256 for info in store.iter_blobs()] == [SHA]


def test_local_ensure_creates_the_directory_and_removes_stale_temp_files(tmp_path: Path) -> None:
    root = tmp_path / "a" / "b" / "blobs"
    store = LocalBlobStore(root)
    with pytest.raises(StorageUnavailable) as excinfo:
        store.check()
    assert excinfo.value.code == "storage_unavailable"
    assert "marketplace init" in excinfo.value.message
    with pytest.raises(StorageUnavailable):
        store.put(SHA, DATA)
    assert not root.exists()

    store.ensure()
    assert root.is_dir() and store.tmp_dir.is_dir()
    stale = store.tmp_dir / "old.part"
    stale.write_bytes(b"x")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    fresh = store.tmp_dir / "new.part"
    fresh.write_bytes(b"x")
    store.ensure()
    assert not stale.exists() and fresh.exists()
    store.check()


def test_local_put_failure_from_the_source_leaves_nothing(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    store.ensure()

    class Broken(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, buffer: object) -> int:
            raise RuntimeError("client went away")

    with pytest.raises(RuntimeError):
        store.put(SHA, Broken())  # type: ignore[arg-type]
    assert list(store.tmp_dir.iterdir()) == []
    assert not store.exists(SHA)


# -- S3 backend -------------------------------------------------------------


def test_s3_key_layout_and_description(s3_server: str, s3_bucket: str) -> None:
    store = S3BlobStore(s3_bucket, "/blobs/", endpoint_url=s3_server)
    store.put(SHA, DATA)
    assert store.key_for(SHA) == f"blobs/{SHA[:2]}/{SHA}"
    raw = s3_client(s3_server).get_object(Bucket=s3_bucket, Key=f"blobs/{SHA[:2]}/{SHA}")
    assert raw["Body"].read() == DATA
    assert store.description == f"s3://{s3_bucket}/blobs @ {s3_server}"
    assert S3BlobStore(s3_bucket, endpoint_url=s3_server).key_for(SHA) == f"{SHA[:2]}/{SHA}"


def test_s3_iter_blobs_ignores_other_keys(s3_server: str, s3_bucket: str) -> None:
    store = S3BlobStore(s3_bucket, "blobs", endpoint_url=s3_server)
    store.put(SHA, DATA)
    client = s3_client(s3_server)
    client.put_object(Bucket=s3_bucket, Key="blobs/README", Body=b"x")
    client.put_object(Bucket=s3_bucket, Key=f"blobs/zz/{OTHER_SHA}", Body=b"x")
    client.put_object(Bucket=s3_bucket, Key=f"other/{OTHER_SHA[:2]}/{OTHER_SHA}", Body=b"x")
    assert [info.sha256 for info in store.iter_blobs()] == [SHA]


def test_s3_presigned_url_downloads_over_http(s3_server: str, s3_bucket: str) -> None:
    store = S3BlobStore(s3_bucket, "blobs", endpoint_url=s3_server)
    store.put(SHA, DATA)
    url = store.presigned_url(SHA, expires=120)
    assert url is not None and url.startswith(s3_server + "/")
    query = parse_qs(urlsplit(url).query)
    assert query["X-Amz-Expires"] == ["120"]
    assert "X-Amz-Signature" in query
    response = requests.get(url, timeout=10)
    assert response.status_code == 200
    assert response.content == DATA
    assert hashlib.sha256(response.content).hexdigest() == SHA


def test_s3_presigned_url_names_the_download(s3_server: str, s3_bucket: str) -> None:
    store = S3BlobStore(s3_bucket, "blobs", endpoint_url=s3_server)
    store.put(SHA, DATA)
    url = store.presigned_url(SHA, filename="acme rfm-score 1.2.0.gear")
    assert url is not None
    response = requests.get(url, timeout=10)
    assert response.status_code == 200 and response.content == DATA
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith("attachment;")
    assert 'filename="acme rfm-score 1.2.0.gear"' in disposition


def test_s3_presign_endpoint(s3_server: str, s3_bucket: str) -> None:
    store = S3BlobStore(
        s3_bucket, "blobs", endpoint_url=s3_server,
        presign_endpoint_url="https://downloads.example.com",
    )
    url = store.presigned_url(SHA)
    assert url is not None
    assert url.startswith(f"https://downloads.example.com/{s3_bucket}/blobs/{SHA[:2]}/{SHA}?")


def test_s3_unreachable_endpoint_fails_fast(s3_server: str) -> None:
    endpoint = f"http://127.0.0.1:{closed_port()}"
    store = S3BlobStore("gears", "blobs", endpoint_url=endpoint, config=fast_fail_config())
    started = time.monotonic()
    for operation in (store.check, lambda: store.put(SHA, DATA), lambda: store.exists(SHA),
                      store.ensure):
        with pytest.raises(StorageUnavailable) as excinfo:
            operation()
        assert excinfo.value.code == "storage_unavailable"
        assert endpoint in excinfo.value.message
        assert "GEARS_S3_ENDPOINT_URL" in excinfo.value.message
    assert time.monotonic() - started < 5


def test_s3_default_config_is_bounded() -> None:
    store = S3BlobStore("gears", endpoint_url="http://127.0.0.1:9")
    config = store.client.meta.config
    assert config.connect_timeout <= 10 and config.read_timeout <= 60
    assert config.retries["mode"] == "standard"
    assert config.s3["addressing_style"] == "path"


@pytest.mark.parametrize(
    ("raised", "expected", "code", "hint"),
    [
        (ClientError({"Error": {"Code": "NoSuchKey"}}, "GetObject"), BlobNotFound, "not_found",
         SHA),
        (ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"}},
                     "PutObject"), StorageUnavailable, "storage_unavailable", "credentials"),
        (ClientError({"Error": {"Code": "NoSuchBucket"}}, "PutObject"), StorageUnavailable,
         "storage_unavailable", "marketplace init"),
        (ClientError({"Error": {"Code": "BadDigest"}}, "PutObject"), IntegrityError,
         "integrity_error", "nothing was stored"),
        (ClientError({"Error": {"Code": "SlowDown", "Message": "Reduce your request rate"}},
                     "PutObject"), StorageError, "storage_error", "Reduce your request rate"),
        (NoCredentialsError(), StorageUnavailable, "storage_unavailable", "AWS_ACCESS_KEY_ID"),
    ],
)
def test_s3_error_translation(
    raised: Exception, expected: type[StorageError], code: str, hint: str
) -> None:
    store = S3BlobStore("gears", endpoint_url="http://127.0.0.1:9")
    with pytest.raises(expected) as excinfo, store._errors(SHA):
        raise raised
    assert isinstance(excinfo.value, expected)
    assert not isinstance(excinfo.value, BlobNotFound) or expected is BlobNotFound
    assert excinfo.value.code == code
    assert hint in excinfo.value.message


def test_s3_missing_bucket(s3_server: str) -> None:
    store = S3BlobStore("gears-no-such-bucket", "blobs", endpoint_url=s3_server)
    with pytest.raises(StorageUnavailable) as excinfo:
        store.check()
    assert excinfo.value.code == "storage_unavailable"
    assert "does not exist" in excinfo.value.message
    with pytest.raises(StorageUnavailable):
        store.put(SHA, DATA)


def test_s3_ensure_creates_the_bucket(s3_server: str) -> None:
    name = f"gears-ensure-{os.urandom(6).hex()}"
    store = S3BlobStore(name, "blobs", endpoint_url=s3_server)
    try:
        store.ensure()
        store.ensure()
        store.check()
        store.put(SHA, DATA)
        assert store.read(SHA) == DATA
    finally:
        client = s3_client(s3_server)
        client.delete_object(Bucket=name, Key=store.key_for(SHA))
        client.delete_bucket(Bucket=name)


# -- storage URLs -------------------------------------------------------------


def test_open_blob_store_file_urls(tmp_path: Path) -> None:
    absolute = open_blob_store((tmp_path / "x y").as_uri())
    assert isinstance(absolute, LocalBlobStore) and absolute.root == tmp_path / "x y"
    assert open_blob_store(f"file://localhost{tmp_path}").root == tmp_path  # type: ignore[attr-defined]
    relative = open_blob_store("file:var/blobs", base_dir=tmp_path)
    assert relative.root == tmp_path / "var" / "blobs"  # type: ignore[attr-defined]
    plain = open_blob_store("var/blobs", base_dir=tmp_path)
    assert plain.root == tmp_path / "var" / "blobs"  # type: ignore[attr-defined]
    assert open_blob_store(str(tmp_path)).root == tmp_path  # type: ignore[attr-defined]


def test_open_blob_store_relative_to_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert open_blob_store("blobs").root == tmp_path / "blobs"  # type: ignore[attr-defined]


def test_open_blob_store_s3_url(s3_server: str, s3_storage_url: str, s3_bucket: str) -> None:
    store = open_blob_store(s3_storage_url, s3_endpoint_url=s3_server, s3_region="us-east-1")
    assert isinstance(store, S3BlobStore)
    assert (store.bucket, store.prefix) == (s3_bucket, "blobs")
    assert store.description == f"{s3_storage_url} @ {s3_server}"
    store.check()
    store.put(SHA, DATA)
    assert store.read(SHA) == DATA
    bare = open_blob_store(f"s3://{s3_bucket}")
    assert isinstance(bare, S3BlobStore) and bare.prefix == ""


@pytest.mark.parametrize(
    "url",
    ["", "   ", "ftp://example.com/blobs", "http://127.0.0.1:9000/bucket", "s3://",
     "s3:///prefix", "file://blobs/dir", "file:", "s3://bucket/p?x=1"],
)
def test_open_blob_store_refuses_bad_urls(url: str) -> None:
    with pytest.raises(StorageError) as excinfo:
        open_blob_store(url)
    assert excinfo.value.code == "invalid_storage_url"
    message = excinfo.value.message
    assert "file:///" in message and "s3://bucket/prefix" in message
