"""Fault injection on loopback: a TCP proxy that can refuse, delay or stall connections.

Put it in front of a real service (the moto S3 server, PostgreSQL) and switch
its ``mode`` while a test runs:

* ``pass``   forward both ways;
* ``refuse`` accept and close at once (the peer sees a reset or EOF);
* ``delay``  forward, but hold every chunk from the service for ``delay`` seconds;
* ``stall``  accept and read, never answer (the peer's read timeout fires).

Everything listens on 127.0.0.1 only and stops with :meth:`FaultProxy.stop`.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from urllib.parse import urlsplit


class FaultProxy:
    def __init__(self, target_url: str, mode: str = "pass", delay: float = 0.0) -> None:
        parts = urlsplit(target_url if "//" in target_url else f"tcp://{target_url}")
        self.target = (parts.hostname or "127.0.0.1", parts.port or 80)
        assert self.target[0] in ("127.0.0.1", "localhost"), "faults stay on loopback"
        self.mode = mode
        self.delay = delay
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.2)
        self.port = self._server.getsockname()[1]
        self._stop = threading.Event()
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.connections = 0
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._server.close()
        self.drop_all()

    def drop_all(self) -> None:
        """Close every open connection (both sides)."""
        with self._lock:
            conns, self._conns = self._conns, set()
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def _track(self, s: socket.socket) -> None:
        with self._lock:
            self._conns.add(s)

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            mode = self.mode
            if mode == "refuse":
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                client.close()
                continue
            self._track(client)
            if mode == "stall":
                threading.Thread(target=self._drain, args=(client,), daemon=True).start()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            self._track(upstream)
            delay = self.delay if mode == "delay" else 0.0
            threading.Thread(target=self._pipe, args=(client, upstream, 0.0), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, delay), daemon=True).start()

    def _drain(self, s: socket.socket) -> None:
        s.settimeout(0.2)
        while not self._stop.is_set():
            try:
                if not s.recv(65536):
                    break
            except TimeoutError:
                continue
            except OSError:
                break
        with contextlib.suppress(OSError):
            s.close()

    def _pipe(self, src: socket.socket, dst: socket.socket, delay: float) -> None:
        try:
            while not self._stop.is_set():
                data = src.recv(65536)
                if not data:
                    break
                if delay:
                    time.sleep(delay)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
