"""The gear cache with real archives, a real blob store and a real HTTP server."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from gears_sdk.archive.read import GearArchive
from marketplace.runtime.loader import (
    MARKER,
    GearCache,
    LoaderError,
    RegistryFetcher,
    StoreFetcher,
)
from marketplace.storage import LocalBlobStore


@pytest.fixture
def archive(make_gear_archive) -> bytes:
    return make_gear_archive("acme/hello", "1.0.0",
                             extra_files={"hello_data/words.txt": "hi\n"})


@pytest.fixture
def store(tmp_path, archive) -> LocalBlobStore:
    s = LocalBlobStore(tmp_path / "blobs")
    s.ensure()
    s.put(sha(archive), archive)
    return s


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.startswith(".tmp-"))


def test_fetch_from_store_unpacks_read_only_with_marker(tmp_path, store, archive):
    cache = GearCache(tmp_path / "cache", StoreFetcher(store))
    digest = sha(archive)
    path = cache.fetch("acme/hello", "1.0.0", digest)
    assert path == tmp_path / "cache" / digest
    assert cache.has(digest) and cache.path_for(digest) == path
    assert json.loads((path / "gear.json").read_text())["name"] == "acme/hello"
    assert (path / "hello_data" / "words.txt").read_text() == "hi\n"
    marker = cache.marker(digest)
    assert marker["sha256"] == digest and marker["version"] == "1.0.0"
    assert "hello.py" in marker["files"] and MARKER not in marker["files"]
    for p in [path, *path.rglob("*")]:
        mode = stat.S_IMODE(p.lstat().st_mode)
        assert mode == (0o555 if p.is_dir() else 0o444), p
    cache.verify_tree(digest)
    # A second fetch is served from the cache without the fetcher.
    assert GearCache(tmp_path / "cache").fetch("acme/hello", "1.0.0", digest) == path
    assert leftovers(tmp_path / "cache") == []


def test_sha_mismatch_is_refused_and_nothing_cached(tmp_path, store, archive,
                                                    make_gear_archive):
    digest = sha(archive)
    blob = store.path_for(digest)
    os.chmod(blob, 0o644)
    blob.write_bytes(make_gear_archive("acme/hello", "1.0.1"))  # the store was tampered with
    cache = GearCache(tmp_path / "cache", StoreFetcher(store))
    with pytest.raises(LoaderError) as err:
        cache.fetch("acme/hello", "1.0.0", digest)
    assert err.value.code == "sha256_mismatch"
    assert not cache.has(digest)
    assert not (tmp_path / "cache").exists() or list((tmp_path / "cache").iterdir()) == []


def test_manifest_must_be_the_requested_gear(tmp_path, store, archive):
    cache = GearCache(tmp_path / "cache", StoreFetcher(store))
    with pytest.raises(LoaderError) as err:
        cache.fetch("acme/other", "1.0.0", sha(archive))
    assert err.value.code == "manifest_mismatch"


def test_missing_blob_and_bad_digest(tmp_path, store):
    cache = GearCache(tmp_path / "cache", StoreFetcher(store))
    with pytest.raises(LoaderError) as err:
        cache.fetch("acme/hello", "1.0.0", "0" * 64)
    assert err.value.code == "not_found"
    with pytest.raises(LoaderError) as err:
        cache.fetch("acme/hello", "1.0.0", "../../etc")
    assert err.value.code == "invalid_digest"


def test_invalid_archive_is_refused_by_the_safe_reader(tmp_path):
    data = b"PK\x03\x04 definitely not a gear"

    class Fixed:
        def fetch(self, name, version, sha256):
            return data

    cache = GearCache(tmp_path / "cache", Fixed())
    with pytest.raises(LoaderError) as err:
        cache.fetch("acme/hello", "1.0.0", sha(data))
    assert err.value.code == "invalid_archive"
    assert not cache.has(sha(data))


@pytest.mark.timeout(10)
def test_concurrent_fetches_of_one_sha_leave_one_consistent_entry(tmp_path, archive):
    barrier = threading.Barrier(4)

    class Together:
        def fetch(self, name, version, sha256):
            barrier.wait()  # every thread has missed the cache before anyone unpacks
            return archive

    cache = GearCache(tmp_path / "cache", Together())
    digest = sha(archive)
    results: list[Path | BaseException] = []

    def run() -> None:
        try:
            results.append(cache.fetch("acme/hello", "1.0.0", digest))
        except BaseException as exc:  # surfaced by the assertion below
            results.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [cache.path_for(digest)] * 4
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [digest]
    cache.verify_tree(digest)


def test_verify_tree_names_modified_extra_and_missing_files(tmp_path, store, archive):
    cache = GearCache(tmp_path / "cache", StoreFetcher(store))
    digest = sha(archive)
    path = cache.fetch("acme/hello", "1.0.0", digest)
    os.chmod(path, 0o755)
    os.chmod(path / "hello.py", 0o644)
    (path / "hello.py").write_text("import os\n")
    (path / "README.md").unlink()
    (path / "sitecustomize.py").write_text("print('pwned')\n")
    with pytest.raises(LoaderError) as err:
        cache.load("acme/hello", "1.0.0", digest)
    exc = err.value
    assert exc.code == "tampered"
    assert exc.files == {"modified": ["hello.py"], "extra": ["sitecustomize.py"],
                         "missing": ["README.md"]}
    for name in ("hello.py", "sitecustomize.py", "README.md"):
        assert name in str(exc)
    # Explicit hashes (the signed ones, later) are checked the same way.
    with pytest.raises(LoaderError):
        cache.verify_tree(digest, {"gear.json": "0" * 64})
    # Evicting and fetching again restores a clean entry.
    cache.evict(digest)
    assert not cache.has(digest)
    cache.fetch("acme/hello", "1.0.0", digest)
    cache.verify_tree(digest)


def test_a_symlink_counts_as_tampering(tmp_path, store, archive):
    cache = GearCache(tmp_path / "cache", StoreFetcher(store))
    digest = sha(archive)
    path = cache.fetch("acme/hello", "1.0.0", digest)
    os.chmod(path, 0o755)
    os.chmod(path / "hello.py", 0o644)
    (path / "hello.py").unlink()
    (path / "hello.py").symlink_to("/etc/passwd")
    with pytest.raises(LoaderError) as err:
        cache.verify_tree(digest)
    assert err.value.files["modified"] == ["hello.py"]


def test_full_disk_leaves_no_temp_dir(tmp_path, store, archive, monkeypatch):
    def full(self, dest, *, read_only=False):
        Path(dest, "partial.py").write_text("x")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(GearArchive, "extract_to", full)
    cache = GearCache(tmp_path / "cache", StoreFetcher(store))
    digest = sha(archive)
    with pytest.raises(LoaderError) as err:
        cache.fetch("acme/hello", "1.0.0", digest)
    assert err.value.code == "cache_full"
    assert "full" in str(err.value)
    assert list((tmp_path / "cache").iterdir()) == []
    monkeypatch.undo()
    assert cache.fetch("acme/hello", "1.0.0", digest).is_dir()


def test_damaged_entry_without_marker_is_replaced(tmp_path, store, archive):
    cache = GearCache(tmp_path / "cache", StoreFetcher(store))
    digest = sha(archive)
    broken = cache.path_for(digest)
    broken.mkdir(parents=True)
    (broken / "half.py").write_text("")
    assert not cache.has(digest)
    path = cache.fetch("acme/hello", "1.0.0", digest)
    assert not (path / "half.py").exists()
    cache.verify_tree(digest)


def test_prune_keeps_only_what_is_asked(tmp_path, make_gear_archive):
    cache = GearCache(tmp_path / "cache")
    a = make_gear_archive("acme/hello", "1.0.0")
    b = make_gear_archive("acme/hello", "1.1.0")
    cache.add(a)
    cache.add(b)
    stale = tmp_path / "cache" / ".tmp-crashed"
    stale.mkdir()
    os.utime(stale, (0, 0))
    assert cache.prune({sha(a)}) == [sha(b)]
    assert cache.has(sha(a)) and not cache.has(sha(b))
    assert not stale.exists()
    cache.evict(sha(b))  # evicting a missing entry is fine


# ---------------------------------------------------------------------------
# RegistryFetcher against a real server on loopback
# ---------------------------------------------------------------------------


@pytest.fixture
def registry(archive):
    """A tiny registry: a download that redirects to another host name (a presigned
    URL stand-in), one with a lying digest header, one missing, one too big."""
    digest = sha(archive)
    seen: list[tuple[str, str | None]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def send(self, status, body=b"", headers=None):
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            seen.append((self.path, self.headers.get("Authorization")))
            port = self.server.server_address[1]
            if self.path == "/api/v1/gears/acme/hello/1.0.0/download":
                self.send(302, headers={"Location": f"http://localhost:{port}/blob/{digest}",
                                        "X-Gears-Sha256": digest})
            elif self.path == f"/blob/{digest}":
                self.send(200, archive, {"Content-Type": "application/octet-stream"})
            elif self.path == "/api/v1/gears/acme/liar/1.0.0/download":
                self.send(200, archive, {"X-Gears-Sha256": "f" * 64})
            elif self.path == "/api/v1/gears/acme/big/1.0.0/download":
                self.send(200, b"x" * 4096)
            else:
                body = json.dumps({"error": {"code": "not_found",
                                             "message": "no such gear version"}}).encode()
                self.send(404, body, {"Content-Type": "application/json"})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield {"url": f"http://127.0.0.1:{server.server_address[1]}", "seen": seen,
           "sha": digest}
    server.shutdown()
    server.server_close()


@pytest.mark.timeout(10)
def test_registry_fetch_follows_redirect_without_leaking_the_token(tmp_path, registry):
    fetcher = RegistryFetcher(registry["url"] + "/api/v1/", token="s3cret", timeout=5)
    cache = GearCache(tmp_path / "cache", fetcher)
    path = cache.fetch("acme/hello", "1.0.0", registry["sha"])
    assert (path / "gear.json").is_file()
    assert registry["seen"] == [("/api/v1/gears/acme/hello/1.0.0/download", "Bearer s3cret"),
                                (f"/blob/{registry['sha']}", None)]


@pytest.mark.timeout(10)
def test_registry_fetch_refuses_wrong_digest_header_missing_and_oversize(tmp_path, registry):
    fetcher = RegistryFetcher(registry["url"], timeout=5)
    cache = GearCache(tmp_path / "cache", fetcher)
    with pytest.raises(LoaderError) as err:
        cache.fetch("acme/liar", "1.0.0", registry["sha"])
    assert err.value.code == "sha256_mismatch"
    with pytest.raises(LoaderError) as err:
        cache.fetch("acme/nope", "1.0.0", registry["sha"])
    assert err.value.code == "not_found" and "no such gear version" in str(err.value)
    small = RegistryFetcher(registry["url"], timeout=5, max_bytes=1024)
    with pytest.raises(LoaderError) as err:
        small.fetch("acme/big", "1.0.0", "a" * 64)
    assert err.value.code == "too_large"
    assert not (tmp_path / "cache").exists() or list((tmp_path / "cache").iterdir()) == []


def test_registry_unreachable(tmp_path):
    fetcher = RegistryFetcher("http://127.0.0.1:9", timeout=2)
    with pytest.raises(LoaderError) as err:
        fetcher.fetch("acme/hello", "1.0.0", "a" * 64)
    assert err.value.code == "registry_unavailable"


def test_a_store_failure_reason_shows_no_host_path(tmp_path):
    """The reason is shown on workspace pages; the store's directory stays in the log."""
    root = tmp_path / "blobs"
    root.mkdir()
    sha = "ab" * 32
    (root / "ab" / "ab").mkdir(parents=True)
    (root / "ab" / "ab" / sha).mkdir()  # a directory where the blob should be: EISDIR
    with pytest.raises(LoaderError) as err:
        StoreFetcher(LocalBlobStore(root)).fetch("acme/x", "1.0.0", sha)
    assert err.value.code == "download_failed"
    assert str(tmp_path) not in str(err.value)
