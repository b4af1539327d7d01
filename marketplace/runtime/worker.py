"""The host side of one worker process: launch, handshake, calls, deadlines.

A :class:`Worker` owns one process for one installation and talks to it
through :class:`gears_sdk.worker.protocol.Channel`. Everything the process
sends is untrusted: sizes are capped before reading, message shapes are
checked, and any violation kills the process. Each call has a wall-clock
deadline (the manifest's ``limits.timeout_ms``) covering the gear's work
and every ``ctx`` service it asks for; when it passes, the whole process
group is killed. A dead worker is restarted on the next call, after an
exponential backoff, so a crash-looping gear cannot eat the host's CPU.

:meth:`Worker.call_batch` sends several calls of one hook in one message and
keeps the single-call rules per item: the worker answers each call as soon
as it is done, and each answer has its own ``timeout_ms`` deadline, starting
when the previous answer arrived. A timeout, crash or protocol violation
fails the call being waited for exactly as it would fail a single call (the
process is killed and counted), then the calls not yet run go out in a new
batch to the restarted worker, under the same backoff.
"""

from __future__ import annotations

import logging
import os
import resource
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any

from gears_sdk.values import clean_text
from gears_sdk.worker.attempts import CATEGORIES, MAX_COUNT
from gears_sdk.worker.protocol import (
    PROTOCOL_VERSION,
    Channel,
    ChannelClosed,
    ChannelTimeout,
    MessageTooLarge,
    ProtocolError,
    encode,
    encode_batch,
)
from marketplace.runtime.cgroups import WorkerCgroup
from marketplace.runtime.errors import (
    GearCallError,
    GearCrashed,
    GearProtocolError,
    GearTimeout,
)
from marketplace.runtime.health import Health
from marketplace.runtime.installation import Installation
from marketplace.runtime.launcher import LaunchPlan
from marketplace.runtime.output import OutputLimiter, strip_controls
from marketplace.runtime.services import Services
from marketplace.runtime.turns import Turns

#: The interpreter's own boot (up to its ``hello``; no gear code runs before that).
START_TIMEOUT_S = 20.0
#: The gear's load window (``start`` → ``ready``: confinement and importing the gear)
#: is this plus twice its ``limits.timeout_ms``, never more than START_TIMEOUT_S.
LOAD_BASE_S = 2.0
BACKOFF_BASE_S = 0.1
BACKOFF_MAX_S = 30.0
MAX_LOGS_PER_CALL = 1000
#: Calls that may wait for an installation's worker while it serves another; more
#: fail at once as ``busy``, so one slow gear holds at most this many + 1 threads.
MAX_WAITERS = 1
#: How long stopping a worker waits for a running call before killing it under the call.
STOP_WAIT_S = 1.0
#: The longest a batch waits for a busy worker (a batch is a call per item).
BATCH_WAIT_S = 10.0

#: What :meth:`Worker.call_batch` reports per call: ``(index, raw JSON result or
#: the call's GearCallError, latency in ms)``; returning False stops the batch.
OnItem = Callable[[int, Any, float], bool]


def load_deadline_s(limits: dict[str, int]) -> float:
    """How long a gear may take to load (import included), from its manifest's limits."""
    timeout_s = max(0.0, float(limits.get("timeout_ms", 1000))) / 1000
    return min(START_TIMEOUT_S, LOAD_BASE_S + 2 * timeout_s)


def describe_exit(code: int | None) -> str:
    """``killed by SIGKILL`` / ``exited with status 3``, for error messages."""
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"


def host_report(plan: LaunchPlan) -> dict[str, Any]:
    """The confinement the host planned and launched a worker with, for the health API.

    Built from the host's own launch plan, never from what the worker says about
    itself: a gear's code may run before the report and could claim anything.
    (A worker that fails to apply a step of the plan exits instead of starting.)
    """
    planned = plan.start_sandbox
    uid = planned.get("uid") if planned.get("uid") is not None else plan.user
    return {"uid": uid, "drop_caps": bool(planned.get("drop_caps")),
            "landlock": planned.get("landlock") is not None,
            "seccomp": bool(planned.get("seccomp")),
            "rlimits": {_RLIMIT_NAMES.get(k, str(k)): v for k, v in plan.rlimits.items()},
            "cgroup": ({"version": plan.cgroup.version, **asdict(plan.cgroup.limits)}
                       if plan.cgroup is not None else None),
            "notes": list(plan.notes)}


_RLIMIT_NAMES = {getattr(resource, n): n for n in dir(resource) if n.startswith("RLIMIT_")}


class Worker:
    """One supervised worker process for one installation."""

    def __init__(self, inst: Installation, plan: Callable[[], LaunchPlan], services: Services,
                 health: Health, *, start_timeout: float = START_TIMEOUT_S,
                 backoff_base: float = BACKOFF_BASE_S, backoff_max: float = BACKOFF_MAX_S,
                 max_waiters: int = MAX_WAITERS):
        self.inst = inst
        self._plan = plan
        self.services = services
        self.health = health
        self.start_timeout = start_timeout
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.proc: subprocess.Popen[bytes] | None = None
        self.channel: Channel | None = None
        self.sandbox: dict[str, Any] = {}
        self.stderr_tail: deque[str] = deque(maxlen=40)
        #: stderr and ctx.log share it: per-installation output rate limit
        self.output = OutputLimiter()
        self.cgroup: WorkerCgroup | None = None
        #: its data dir had no free space or no free inode after the last call
        self.data_full = False
        #: what the gear tried that the sandbox exists to stop, by category, as the
        #: worker's audit hook counted it (see :mod:`gears_sdk.worker.attempts`)
        self.attempts: dict[str, int] = {}
        self._lock = threading.RLock()
        self._turns = Turns(max_waiters, self._lock)
        self._ids = 0
        self._starts = 0
        self._failures_in_row = 0
        self._next_start = 0.0
        self.log = logging.getLogger(f"gears.gear.{inst.id}")

    # -- turns ----------------------------------------------------------------

    @contextmanager
    def turn(self, wait_s: float) -> Iterator[None]:
        """The worker for one call or batch, waiting at most ``wait_s`` for it.

        One process serves one call at a time. A caller that finds it busy waits
        only as long as its own call's deadline, and only while fewer than
        ``max_waiters`` others wait; otherwise it fails at once with ``busy``
        (:class:`~marketplace.runtime.turns.Turns`). So a hung or slow gear holds
        at most ``max_waiters + 1`` of the server's request threads.
        """
        with self._turns.take(wait_s, self._busy_error):
            yield

    def _busy_error(self, why: str) -> GearCallError:
        return self._attribute(GearCallError, f"the worker is busy with another call ({why})",
                               code="busy")

    # -- lifecycle ----------------------------------------------------------

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def _attribute(self, cls: type[GearCallError], message: str, **kw: Any) -> GearCallError:
        return cls(message, installation=self.inst.id, gear=self.inst.gear, **kw)

    def start(self) -> None:
        """Launch the process and complete the handshake, or raise ``GearCallError``."""
        with self._lock:
            self.kill()
            plan = self._plan()
            self._starts += 1
            self.cgroup = plan.cgroup
            try:
                # no user=: the child joins its control group as root, then switches
                self.proc = subprocess.Popen(
                    plan.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE, env=plan.env, cwd=plan.cwd, close_fds=True,
                    start_new_session=True, preexec_fn=plan.preexec())
            except BaseException:
                self._release_cgroup()
                raise
            assert self.proc.stdin and self.proc.stdout and self.proc.stderr
            os.set_blocking(self.proc.stdin.fileno(), False)
            os.set_blocking(self.proc.stdout.fileno(), False)
            self.channel = Channel(self.proc.stdout.fileno(), self.proc.stdin.fileno())
            threading.Thread(target=self._drain_stderr, args=(self.proc.stderr,),
                             name=f"gear-stderr-{self.inst.id}", daemon=True).start()
            try:
                self._handshake(plan)
            except GearCallError:
                self.kill()
                raise
            self._idle()

    def start_attributed(self) -> None:
        """:meth:`start`, with any failure to plan or launch the worker (an ``OSError``,
        a ``RecursionError`` on a gear-made tree...) turned into the installation's
        ``start_failed`` :class:`GearCallError`, so it is counted like any other."""
        try:
            self.start()
        except GearCallError:
            raise
        except Exception as exc:
            self.log.warning("cannot start the worker of %s: %r", self.inst.gear, exc)
            self.kill()
            raise self._attribute(GearCrashed, f"the worker could not be started: "
                                  f"{type(exc).__name__}: {str(exc)[:500]}",
                                  code="start_failed") from None

    def _handshake(self, plan: LaunchPlan) -> None:
        assert self.channel is not None
        deadline = time.monotonic() + self.start_timeout
        loading = False
        manifest = self.inst.manifest
        try:
            hello = self.channel.recv(deadline)
            if hello.get("op") != "hello" or hello.get("version") != PROTOCOL_VERSION:
                raise self._attribute(
                    GearProtocolError, f"protocol version mismatch: the host speaks "
                    f"{PROTOCOL_VERSION}, the worker said {hello.get('version')!r}")
            # from here on gear code runs (its imports): the gear's own deadline
            loading = True
            deadline = time.monotonic() + load_deadline_s(manifest.limits)
            self.channel.send({
                "op": "start", "version": PROTOCOL_VERSION,
                "gear": {"name": manifest.name, "version": str(manifest.version),
                         "kind": manifest.kind, "entrypoint": manifest.entrypoint,
                         "hooks": list(manifest.hooks), "path": plan.gear_path,
                         "installation": self.inst.id, "workspace": self.inst.workspace},
                "sandbox": plan.start_sandbox}, deadline)
            ready = self.channel.recv(deadline)
        except ChannelTimeout:
            if loading:
                raise self._attribute(
                    GearTimeout, f"the gear did not load within its start deadline of "
                    f"{load_deadline_s(manifest.limits):.1f} s ({LOAD_BASE_S:g} s + twice "
                    f"limits.timeout_ms)", code="start_timeout") from None
            raise self._attribute(GearCrashed, "the worker did not start in time",
                                  code="load_failed") from None
        except ProtocolError as exc:
            raise self._died(f"loading ({exc})", code="load_failed") from None
        if ready.get("op") != "ready":
            raise self._attribute(GearCallError, f"the gear failed to load: "
                                  f"{clean_text(ready.get('type'), 100)}: "
                                  f"{clean_text(ready.get('message'), 2000)}",
                                  code="load_failed")
        self.sandbox = host_report(plan)

    def _drain_stderr(self, stream: Any) -> None:
        """Gear output (print, tracebacks) becomes log lines attributed to the gear,
        stripped of control sequences and rate-limited with ``ctx.log``."""
        try:
            for raw in iter(lambda: stream.readline(4096), b""):
                line = strip_controls(raw.decode("utf-8", "replace")).rstrip()
                if self._admit(line):
                    self.stderr_tail.append(line)
                    self.log.info("%s (stderr): %s", self.inst.gear, line)
        except (OSError, ValueError):
            pass

    def _admit(self, text: str) -> bool:
        ok, dropped = self.output.admit(text)
        if dropped:
            self.log.warning("%s: %d line(s) of output dropped (rate limit)", self.inst.gear,
                             dropped)
        return ok

    def _gear_log(self, message: dict[str, Any]) -> None:
        """A ``ctx.log`` message, stripped and under the same rate limit as stderr."""
        text = strip_controls(str(message.get("message", ""))[:8192])
        if self._admit(text):
            self.services.log({**message, "message": text})
            self.health.logged(str(message.get("level") or "info"), text)

    def _died(self, during: str, code: str = "crashed") -> GearCallError:
        """The error for a worker that exited on its own: ``memory_limit`` when the
        kernel's OOM killer killed it in its control group. Cleans the worker up."""
        status = describe_exit(self._reap())
        oom = self.cgroup is not None and self.cgroup.oom_kills() > 0
        self.kill()
        if oom:
            assert self.cgroup is not None
            limit_mb = self.cgroup.limits.memory_bytes // (1024 * 1024)
            return self._attribute(
                GearCrashed, f"the worker exceeded its memory limit during {during}: "
                f"{limit_mb} MiB for everything it holds (limits.memory_mb plus the "
                f"interpreter; shared memory, memfd and page cache included), so the kernel "
                f"killed it ({status})", code="memory_limit")
        return self._attribute(GearCrashed, f"the worker died during {during} "
                               f"({status}){self._tail()}", code=code)

    def _idle(self) -> None:
        """Between calls the worker's control group is frozen: no CPU, no output."""
        self._check_data_dir()
        if self.cgroup is not None and self.alive:
            try:
                self.cgroup.freeze()
            except OSError as exc:
                self.log.warning("could not freeze worker %s: %s", self.pid, exc)

    def _check_data_dir(self) -> None:
        """Log (once per episode) when the gear filled its data dir's quota, even if
        it caught the ENOSPC itself."""
        data = self.inst.data_dir
        if data is None or not os.path.ismount(data):
            return
        try:
            st = os.statvfs(data)
        except OSError:
            return
        # "full": under 1 MiB (or 1 %) left, or no inode; ENOSPC leaves a few blocks
        room = st.f_bavail * st.f_frsize
        no_room = room < max(1024 * 1024, st.f_blocks * st.f_frsize // 100)
        full = no_room or st.f_favail == 0
        if full and not self.data_full:
            what = "size" if no_room else "file count"
            self.log.warning("%s: its data dir is full (%s quota reached); its writes fail "
                             "with ENOSPC", self.inst.gear, what)
        self.data_full = full

    def _busy(self) -> None:
        if self.cgroup is not None:
            try:
                self.cgroup.thaw()
            except OSError as exc:
                self.log.warning("could not thaw worker %s: %s", self.pid, exc)

    def _release_cgroup(self) -> None:
        group = self.cgroup
        if group is not None and not group.removed:
            try:
                if not group.remove():
                    self.log.error("the control group of worker %s still has tasks", self.pid)
            except OSError as exc:
                self.log.error("could not remove the control group of worker %s: %s",
                               self.pid, exc)

    def _tail(self) -> str:
        lines = [clean_text(line) for line in list(self.stderr_tail)[-8:] if line]
        return ("\n  " + "\n  ".join(lines)) if lines else ""

    def _reap(self, timeout: float = 5.0) -> int | None:
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL the worker's whole process group and reap it."""
        proc = self.proc
        if proc is None:
            self._release_cgroup()
            return
        if proc.poll() is None:
            if self.cgroup is not None:
                self.cgroup.kill()
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                proc.kill()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                self.log.error("worker %s did not die after SIGKILL", proc.pid)
        self._release_cgroup()
        for stream in (proc.stdin, proc.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass

    def stop(self, wait_s: float = STOP_WAIT_S) -> None:
        """Stop the worker (politely: closing stdin ends its loop; then SIGKILL).

        A call still running after ``wait_s`` (a hung gear) is not waited out: the
        process is killed under it, and that call fails as ``crashed``. Whoever
        stops a worker (a config change, the kill list, shutdown) never waits on a
        gear longer than that.
        """
        if not self._lock.acquire(timeout=wait_s):
            self.log.warning("stopping %s while a call still runs: killing it", self.inst.gear)
            self.kill()
            return
        try:
            if self.alive and self.channel is not None:
                self._busy()
                try:
                    self.channel.send({"op": "stop"}, time.monotonic() + 0.5)
                    self.proc.wait(1.0)  # type: ignore[union-attr]
                except (ProtocolError, subprocess.TimeoutExpired):
                    pass
            self.kill()
        finally:
            self._lock.release()

    # -- calls --------------------------------------------------------------

    def _ensure_started(self, budget: float) -> None:
        if self.alive:
            return
        wait = self._next_start - time.monotonic()
        if wait > budget:
            raise self._attribute(GearCallError, f"the worker is restarting after "
                                  f"{self._failures_in_row} failure(s); retry in {wait:.1f} s",
                                  code="backoff")
        if wait > 0:
            time.sleep(wait)
        restarting = self._starts > 0
        try:
            self.start_attributed()
        except GearCallError:
            self._failed()
            raise
        finally:
            if restarting:
                self.health.restarted()

    def _failed(self) -> None:
        self._failures_in_row += 1
        delay = min(self.backoff_max, self.backoff_base * 2 ** (self._failures_in_row - 1))
        self._next_start = time.monotonic() + delay

    def call(self, hook: str, kwargs: dict[str, Any], timeout_ms: int) -> Any:
        """Call ``hook`` in the worker; the raw JSON result, or ``GearCallError``."""
        with self.turn(timeout_ms / 1000):
            self._ids += 1
            call_id = self._ids
            try:
                frame = encode({"op": "call", "id": call_id, "hook": hook, "kwargs": kwargs})
            except MessageTooLarge as exc:
                raise self._attribute(GearCallError, f"the call's arguments are too large: {exc}",
                                      code="too_large") from None
            self._ensure_started(timeout_ms / 1000)
            assert self.channel is not None
            deadline = time.monotonic() + timeout_ms / 1000
            self._busy()
            try:
                self.channel.send_raw(frame, deadline)
                value = self._await_result(call_id, hook, deadline)
            except GearCallError:
                self._idle()
                raise
            except ChannelTimeout:
                self.kill()
                self._failed()
                raise self._attribute(GearTimeout, f"timeout after {timeout_ms} ms in {hook}",
                                      code="timeout") from None
            except ChannelClosed:
                error = self._died(hook)
                self._failed()
                raise error from None
            except ProtocolError as exc:
                self.kill()
                self._failed()
                raise self._attribute(GearProtocolError, f"the worker broke the protocol "
                                      f"during {hook}: {exc}", code="protocol") from None
            self._failures_in_row = 0
            self._idle()
            return value

    def call_batch(self, hook: str, calls: Sequence[bytes], timeout_ms: int,
                   on_item: OnItem) -> int:
        """Call ``hook`` once per encoded kwargs object in ``calls``, in order.

        ``on_item`` hears every call's outcome as it arrives (a failure is a
        ``GearCallError`` with the same code a single call would raise); when
        it returns False the rest of the batch is dropped and a worker still
        running it is killed. Returns how many calls were reported. The
        caller keeps the framed batch under the size cap. The wait for the worker
        is bounded like the batch itself (:meth:`turn`).
        """
        with self.turn(min(BATCH_WAIT_S, len(calls) * timeout_ms / 1000)):
            try:
                return self._call_batch(hook, calls, timeout_ms, on_item)
            finally:
                self._idle()

    def _call_batch(self, hook: str, calls: Sequence[bytes], timeout_ms: int,
                    on_item: OnItem) -> int:
        done = 0
        while done < len(calls):
            began = time.monotonic()
            try:
                self._ensure_started(timeout_ms / 1000)
            except GearCallError as exc:
                done += 1
                if not self._report(on_item, done - 1, exc, began, idle=True):
                    return done
                continue
            self._ids += 1
            call_id, base = self._ids, done
            try:
                frame = encode_batch(call_id, hook, list(calls[base:]))
            except MessageTooLarge as exc:
                raise self._attribute(GearCallError, f"the batch is too large: {exc}",
                                      code="too_large") from None
            assert self.channel is not None
            deadline = began + timeout_ms / 1000
            broken = False
            self._busy()
            while done < len(calls) and not broken:
                outcome: Any
                try:
                    if done == base:
                        self.channel.send_raw(frame, deadline)
                    outcome = self._await_result(call_id, hook, deadline, done - base)
                    self._failures_in_row = 0
                except GearCallError as exc:  # the hook raised: that call only
                    outcome = exc
                except ChannelTimeout:
                    self.kill()
                    self._failed()
                    outcome = self._attribute(GearTimeout, f"timeout after {timeout_ms} "
                                              f"ms in {hook}", code="timeout")
                    broken = True
                except ChannelClosed:
                    outcome = self._died(hook)
                    self._failed()
                    broken = True
                except ProtocolError as exc:
                    self.kill()
                    self._failed()
                    outcome = self._attribute(GearProtocolError, f"the worker broke the "
                                              f"protocol during {hook}: {exc}",
                                              code="protocol")
                    broken = True
                done += 1
                idle = broken or done == len(calls)
                if not self._report(on_item, done - 1, outcome, began, idle=idle):
                    return done
                began = time.monotonic()
                deadline = began + timeout_ms / 1000
        return done

    def _report(self, on_item: OnItem, index: int, outcome: Any, began: float, *,
                idle: bool) -> bool:
        """Hand one outcome to ``on_item``; a worker left mid-batch is killed when the
        caller stops (or fails) so its unread answers can never meet the next call."""
        try:
            keep = on_item(index, outcome, (time.monotonic() - began) * 1000)
        except BaseException:
            if not idle:
                self.kill()
            raise
        if not keep and not idle:
            self.kill()
        return keep

    def _note_attempts(self, reported: Any) -> None:
        """Add the worker's attempt counts; only known categories and sane counts count
        (the message comes from the gear's process)."""
        if not isinstance(reported, dict):
            return
        for what, n in reported.items():
            if what in CATEGORIES and type(n) is int and 0 < n <= MAX_COUNT:
                self.attempts[what] = min(self.attempts.get(what, 0) + n, MAX_COUNT)

    def _await_result(self, call_id: int, hook: str, deadline: float,
                      index: int | None = None) -> Any:
        assert self.channel is not None
        logs = 0
        while True:
            message = self.channel.recv(deadline)
            op = message.get("op")
            if op == "request":
                self.channel.send(self.services.handle(message, deadline), deadline)
            elif op == "log":
                logs += 1
                if logs <= MAX_LOGS_PER_CALL:
                    self._gear_log(message)
            elif (op in ("result", "error") and message.get("id") == call_id
                  and message.get("index") == index
                  and type(message.get("index")) is type(index)):
                self._note_attempts(message.get("attempts"))
                if op == "result":
                    return message.get("value")
                kind = clean_text(message.get("type", "Exception"), 100)
                code = "too_large" if kind == "ResultTooLarge" else "gear_error"
                if kind == "OSError" and str(message.get("message", "")).startswith(
                        ("[Errno 28]", "[Errno 122]")):
                    code = "data_quota"  # its data dir is full (size or file count)
                raise self._attribute(GearCallError, f"{hook} raised {kind}: "
                                      f"{clean_text(message.get('message', ''), 2000)}",
                                      code=code, error_type=kind)
            else:
                raise ProtocolError(f"unexpected {op!r} message while waiting for a result")
