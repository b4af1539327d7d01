"""The four registries on loopback, each with its own publish and download protocol.

Every subject offers the same small surface (:class:`Subject`): start on a
free loopback port, build upload payloads ahead of the clock, upload one,
and name one file URL for the download test.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import sys
import tarfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import requests

from bench import peers
from bench.gears import gear_archive
from bench.util import (
    BenchError,
    free_port,
    python_env,
    run,
    server_process,
    wait_http,
)
from marketplace.server import default_workers

PASSWORD = "bench-password"
#: Bytes of random data inside every uploaded package (packages come out at about 20 KB).
FILLER = 19_000


@dataclass(frozen=True)
class Payload:
    """One package ready to upload: its name, file name, bytes and digest."""

    name: str
    filename: str
    data: bytes
    sha256: str


class Subject:
    """A registry under test. ``unavailable`` holds the reason when it cannot run."""

    name = ""
    unavailable: str | None = None
    version = ""
    settings = ""

    def __init__(self) -> None:
        self.url = ""
        self.first: Payload | None = None

    def start(self, workdir: Path, stack: ExitStack) -> None:
        raise NotImplementedError

    def payloads(self, tag: str, n: int) -> list[Payload]:
        raise NotImplementedError

    def upload(self, session: requests.Session, p: Payload) -> None:
        raise NotImplementedError

    def download_url(self) -> str:
        raise NotImplementedError


def _check(resp: requests.Response, *ok: int) -> None:
    if resp.status_code not in ok:
        raise BenchError(f"{resp.request.method} {resp.url}: {resp.status_code} {resp.text[:300]}")


def _random(name: str, n: int) -> bytes:
    import random

    return random.Random(name).randbytes(n)


# -- Gears ----------------------------------------------------------------------------


class Gears(Subject):
    """``marketplace serve``: gunicorn, SQLite and a local blob directory."""

    name = "gears"

    def __init__(self) -> None:
        super().__init__()
        from gears_sdk import __version__

        self.version = __version__
        self.workers = default_workers()
        self.settings = (f"`marketplace serve`: gunicorn {self.workers} workers x 4 threads "
                         "(gthread), SQLite database, local blob directory, access log on, vetting left to "
                         "separate `marketplace vet worker` processes (none run here, so the "
                         "queued vetting jobs wait)")
        self.tmp: Path | None = None

    def start(self, workdir: Path, stack: ExitStack) -> None:
        self.tmp = workdir / "gears"
        self.tmp.mkdir(parents=True)
        env = python_env()
        env.update(GEARS_DATABASE_URL=f"sqlite:///{self.tmp / 'registry.db'}",
                   GEARS_STORAGE_URL=f"file://{self.tmp / 'blobs'}",
                   GEARS_SECRET_KEY="bench-secret", GEARS_INSTANCE_PATH=str(self.tmp / "instance"),
                   GEARS_ADMIN_EMAIL="admin@bench.test", GEARS_ADMIN_PASSWORD=PASSWORD,
                   # No vetting worker beside the server: it would load every upload
                   # in a sandbox on the same two cores while the peers are measured.
                   GEARS_VETTING_WORKERS="0")
        cli = [sys.executable, "-m", "marketplace.cli"]

        def operator(*args: str) -> str:
            return run([*cli, *args], env=env, cwd=self.tmp, timeout=120).strip()

        operator("init")
        operator("create-user", "dev@bench.test", "--role", "developer")
        operator("create-publisher", "bench", "--owner", "dev@bench.test")
        self.token = operator("create-token", "dev@bench.test", "--scope", "publish:bench")
        self.admin = operator("create-token", "admin@bench.test", "--scope", "admin")
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        log = workdir / "gears.log"
        proc = stack.enter_context(server_process(
            [*cli, "serve", "--host", "127.0.0.1", "--port", str(port),
             "--workers", str(self.workers), "--engine-port", "0"], log=log, env=env, cwd=self.tmp))
        wait_http(f"{self.url}/healthz", process=proc, log=log)

    def payloads(self, tag: str, n: int) -> list[Payload]:
        assert self.tmp is not None
        out = []
        for i in range(n):
            name = f"bench/{tag}-{i}"
            data, digest = gear_archive(self.tmp / "src", name, filler=FILLER)
            out.append(Payload(name, f"{tag}-{i}.gear", data, digest))
        return out

    def upload(self, session: requests.Session, p: Payload) -> None:
        resp = session.post(f"{self.url}/api/v1/gears",
                            files={"file": (p.filename, p.data, "application/octet-stream")},
                            headers={"Authorization": f"Bearer {self.token}"}, timeout=60)
        _check(resp, 201)
        self.first = self.first or p

    def download_url(self) -> str:
        assert self.first is not None
        path = f"/api/v1/gears/{self.first.name}/1.0.0"
        _check(requests.post(f"{self.url}/api/v1/admin{path.removeprefix('/api/v1')}/approve",
                             headers={"Authorization": f"Bearer {self.admin}"}, timeout=30), 200)
        return f"{self.url}{path}/download"


# -- Python package indexes ------------------------------------------------------------


def sdist(name: str, filler: int) -> Payload:
    """A small source distribution ``name``-1.0.0.tar.gz of about ``filler`` bytes."""
    base = f"{name.replace('-', '_')}-1.0.0"
    pkg_info = (f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0.0\n"
                "Summary: A package used by the benchmarks.\n").encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for member, content in ((f"{base}/PKG-INFO", pkg_info),
                                (f"{base}/data.bin", _random(name, filler))):
            info = tarfile.TarInfo(member)
            info.size, info.mtime = len(content), 0
            tar.addfile(info, io.BytesIO(content))
    data = buf.getvalue()
    return Payload(name, f"{base}.tar.gz", data, hashlib.sha256(data).hexdigest())


def legacy_upload(session: requests.Session, url: str, p: Payload, **kw: Any) -> None:
    """The upload API twine speaks (``:action=file_upload``)."""
    form = {":action": "file_upload", "protocol_version": "1", "metadata_version": "2.1",
            "name": p.name, "version": "1.0.0", "filetype": "sdist", "pyversion": "source",
            "sha256_digest": p.sha256}
    resp = session.post(url, data=form, files={"content": (p.filename, p.data)}, timeout=60, **kw)
    _check(resp, 200, 201)


class PyPIServer(Subject):
    """pypiserver's WSGI app under the same gunicorn settings as Gears."""

    name = "pypiserver"

    def __init__(self, unavailable: str | None) -> None:
        super().__init__()
        self.unavailable = unavailable
        self.workers = default_workers()
        self.settings = (f"gunicorn {self.workers} workers x 4 threads (gthread, the same "
                         "gunicorn as Gears), package directory on local disk with its cached-dir backend (watchdog), htpasswd "
                         "(apr1) auth for uploads, access log on")
        if not unavailable:
            self.version = peers.python_peer_version("pypiserver")

    def start(self, workdir: Path, stack: ExitStack) -> None:
        root = workdir / "pypiserver"
        (root / "packages").mkdir(parents=True)
        htpasswd = root / "htpasswd"
        run([str(peers.venv_bin("python")), "-c",
             "import sys; from passlib.apache import HtpasswdFile as H; "
             "h = H(sys.argv[1], new=True, default_scheme='apr_md5_crypt'); "
             "h.set_password('bench', sys.argv[2]); h.save()", str(htpasswd), PASSWORD])
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        app = (f"pypiserver:app(root={str(root / 'packages')!r}, authenticate=['update'], "
               f"password_file={str(htpasswd)!r}, disable_fallback=True)")
        log = workdir / "pypiserver.log"
        proc = stack.enter_context(server_process(
            [str(peers.venv_bin("gunicorn")), "--bind", f"127.0.0.1:{port}", "--workers",
             str(self.workers), "--worker-class", "gthread", "--threads", "4",
             "--keep-alive", "5", "--access-logfile", "-", app], log=log, cwd=root))
        wait_http(f"{self.url}/", process=proc, log=log)

    def payloads(self, tag: str, n: int) -> list[Payload]:
        return [sdist(f"bench-{tag}-{i}", FILLER) for i in range(n)]

    def upload(self, session: requests.Session, p: Payload) -> None:
        legacy_upload(session, f"{self.url}/", p, auth=("bench", PASSWORD))
        self.first = self.first or p

    def download_url(self) -> str:
        assert self.first is not None
        return f"{self.url}/packages/{self.first.filename}"


class Devpi(Subject):
    """devpi-server with its own server (waitress), one process, a private index."""

    name = "devpi"

    def __init__(self, unavailable: str | None) -> None:
        super().__init__()
        self.unavailable = unavailable
        self.settings = ("devpi-server's own waitress server: one process (devpi keeps its "
                         "state in one process), 50 threads (its default), `--offline-mode`, "
                         "a private index `bench/dev` with no bases, request log on")
        if not unavailable:
            self.version = peers.python_peer_version("devpi-server")

    def start(self, workdir: Path, stack: ExitStack) -> None:
        serverdir = workdir / "devpi"
        run([str(peers.venv_bin("devpi-init")), "--serverdir", str(serverdir),
             "--root-passwd", PASSWORD, "--no-root-pypi"], timeout=300)
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        log = workdir / "devpi.log"
        proc = stack.enter_context(server_process(
            [str(peers.venv_bin("devpi-server")), "--serverdir", str(serverdir), "--host",
             "127.0.0.1", "--port", str(port), "--offline-mode"], log=log))
        wait_http(f"{self.url}/+api", process=proc, log=log, timeout=120)
        headers = {"Accept": "application/json", "Content-Type": "application/json"}
        root = self._login("root", headers)
        _check(requests.put(f"{self.url}/bench", headers=root, timeout=30,
                            data=json.dumps({"password": PASSWORD, "email": "b@bench.test"})),
               201)
        self.auth = self._login("bench", headers)
        _check(requests.put(f"{self.url}/bench/dev", headers=self.auth, timeout=30,
                            data=json.dumps({"type": "stage", "bases": [], "volatile": True})),
               200, 201)

    def _login(self, user: str, headers: dict[str, str]) -> dict[str, str]:
        resp = requests.post(f"{self.url}/+login", headers=headers, timeout=30,
                             data=json.dumps({"user": user, "password": PASSWORD}))
        _check(resp, 200)
        token = resp.json()["result"]["password"]
        auth = base64.b64encode(f"{user}:{token}".encode()).decode()
        return {**headers, "X-Devpi-Auth": auth}

    def payloads(self, tag: str, n: int) -> list[Payload]:
        return [sdist(f"bench-{tag}-{i}", FILLER) for i in range(n)]

    def upload(self, session: requests.Session, p: Payload) -> None:
        # The login token, as `devpi upload` sends it: basic auth would run devpi's
        # deliberately slow password hash on every upload.
        legacy_upload(session, f"{self.url}/bench/dev/", p,
                      headers={"X-Devpi-Auth": self.auth["X-Devpi-Auth"]})
        self.first = self.first or p

    def download_url(self) -> str:
        assert self.first is not None
        page = f"{self.url}/bench/dev/+simple/{self.first.name}/"
        resp = requests.get(page, timeout=30)
        _check(resp, 200)
        match = re.search(r'href="([^"#]+)', resp.text)
        if match is None:
            raise BenchError(f"no file link on {page}")
        return urljoin(page, match.group(1))


# -- npm -------------------------------------------------------------------------------


VERDACCIO_CONFIG = """\
storage: {storage}
auth:
  htpasswd:
    file: {htpasswd}
    max_users: 10
uplinks: {{}}
packages:
  '**':
    access: $all
    publish: $authenticated
max_body_size: 10mb
web:
  enable: false
log: {{type: stdout, format: pretty, level: http}}
"""


class Verdaccio(Subject):
    """verdaccio: one Node.js process, file storage, htpasswd auth, no uplinks."""

    name = "verdaccio"

    def __init__(self, unavailable: str | None, version: str) -> None:
        super().__init__()
        self.unavailable = unavailable
        self.version = version
        self.settings = ("one Node.js process (verdaccio has no multi-process mode of its own), "
                         "file storage, htpasswd auth, no uplinks, web UI off, `http` log level")

    def start(self, workdir: Path, stack: ExitStack) -> None:
        root = workdir / "verdaccio"
        root.mkdir(parents=True)
        config = root / "config.yaml"
        config.write_text(VERDACCIO_CONFIG.format(storage=root / "storage",
                                                  htpasswd=root / "htpasswd"))
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        log = workdir / "verdaccio.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("npm_")}
        proc = stack.enter_context(server_process(
            [str(peers.verdaccio_bin()), "--config", str(config), "--listen",
             f"127.0.0.1:{port}"], log=log, env=env, cwd=root))
        wait_http(f"{self.url}/-/ping", process=proc, log=log)
        resp = requests.put(f"{self.url}/-/user/org.couchdb.user:bench", timeout=30,
                            json={"name": "bench", "password": PASSWORD})
        _check(resp, 201)
        self.token = resp.json()["token"]

    def payloads(self, tag: str, n: int) -> list[Payload]:
        return [self._package(f"bench-{tag}-{i}") for i in range(n)]

    def _package(self, name: str) -> Payload:
        manifest = {"name": name, "version": "1.0.0", "description": "benchmark package",
                    "main": "index.js", "license": "MIT"}
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            for member, content in (("package/package.json", json.dumps(manifest).encode()),
                                    ("package/data.bin", _random(name, FILLER))):
                info = tarfile.TarInfo(member)
                info.size, info.mtime = len(content), 0
                tar.addfile(info, io.BytesIO(content))
        tgz = buf.getvalue()
        filename = f"{name}-1.0.0.tgz"
        doc = {
            "_id": name, "name": name, "description": manifest["description"],
            "dist-tags": {"latest": "1.0.0"},
            "versions": {"1.0.0": {**manifest, "_id": f"{name}@1.0.0", "dist": {
                "shasum": hashlib.sha1(tgz).hexdigest(),
                "tarball": f"{self.url}/{name}/-/{filename}"}}},
            "_attachments": {filename: {"content_type": "application/octet-stream",
                                        "data": base64.b64encode(tgz).decode(),
                                        "length": len(tgz)}},
        }
        return Payload(name, filename, json.dumps(doc).encode(),
                       hashlib.sha256(tgz).hexdigest())

    def upload(self, session: requests.Session, p: Payload) -> None:
        resp = session.put(f"{self.url}/{p.name}", data=p.data, timeout=60,
                           headers={"Content-Type": "application/json",
                                    "Authorization": f"Bearer {self.token}"})
        _check(resp, 200, 201)
        self.first = self.first or p

    def download_url(self) -> str:
        assert self.first is not None
        return f"{self.url}/{self.first.name}/-/{self.first.filename}"


def wait_quiet(seconds: float = 1.0) -> None:
    """A short pause between phases so one phase's stragglers do not land in the next."""
    time.sleep(seconds)
