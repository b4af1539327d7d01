"""Event ingestion: store a batch, run the extensions' ``gear_on_event``, apply their patches.

One batch is one transaction: the events, the profiles they create, the
patches the extensions return and any ``ctx.state`` the gears write commit
together, so a failed batch leaves nothing behind and a retried one (same
event ids) is not counted twice.

No write transaction is open while gear code runs: the gears are called
first, on the profiles as they were read (their ``ctx.state`` writes are
staged, :mod:`marketplace.engine.state`), and only then are the results
written, in one short transaction. So a slow gear delays its own batch,
never another writer. Because the write comes after a gap, it is written to
be idempotent under concurrency: events are inserted with ``ON CONFLICT DO
NOTHING`` (an event id another batch stored meanwhile is counted as a
duplicate and its patches are dropped), missing profiles likewise (two
batches creating one user make one profile), and the patches are replayed,
in order, on the profile rows read again under a row lock, so concurrent
batches for one user never lose each other's increments.

Per event, every enabled extension declaring ``gear_on_event`` is called
through the workspace's plugin manager (``pm.hook.gear_on_event``). Its
patch is applied only if it stays within the gear's declared write set
(checked by the runtime) and within ``attributes``/``traits`` (checked
here); a refused patch is counted as that installation's error and the
other gears' patches still apply. Patches apply in plugin order, each seeing
the profile as the previous gears left it on the *next* event.

The calls cross the process boundary in batches: the events are cut, in
order, into runs holding at most one event per user, and each extension gets
one run in one exchange with its worker (``GearProxy.call_batch``). Since a
run never holds two events of the same user, every event still sees its
user's profile with the patches of all earlier events applied, and each gear
sees the events in ingest order; results are then applied event by event in
plugin order, exactly as with one call per event.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from marketplace.db import utcnow
from marketplace.engine.manager import EngineManager, Outcome
from marketplace.engine.models import Event, Profile
from marketplace.engine.profiles import (
    RECENT_EVENTS,
    PatchError,
    apply_patch,
    iso,
    load_profiles,
    profile_doc,
    recent_events,
)
from marketplace.engine.state import StagedState, staged_state, write_staged
from marketplace.engine.upserts import insert_for
from marketplace.engine.validation import NewEvent
from marketplace.models import Workspace
from marketplace.runtime import GearFailure, GearResult, HookDeclined, settle
from marketplace.runtime.proxy import GearProxy


@dataclass
class GearErrors:
    """Errors of one installation during one batch."""

    gear: str
    count: int = 0
    codes: dict[str, int] = field(default_factory=dict)
    last_error: str | None = None

    def add(self, code: str, message: str) -> None:
        self.count += 1
        self.codes[code] = self.codes.get(code, 0) + 1
        self.last_error = message

    def to_dict(self) -> dict[str, Any]:
        return {"gear": self.gear, "count": self.count, "codes": dict(self.codes),
                "last_error": self.last_error}


@dataclass
class IngestResult:
    """What ``POST /events`` answers."""

    accepted: int = 0
    duplicates: int = 0
    profiles_created: int = 0
    patches_applied: int = 0
    gear_errors: dict[str, GearErrors] = field(default_factory=dict)
    took_ms: float = 0.0

    def error(self, installation: str, gear: str, code: str, message: str) -> None:
        self.gear_errors.setdefault(installation, GearErrors(gear)).add(code, message)

    def to_dict(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "duplicates": self.duplicates,
                "profiles_created": self.profiles_created,
                "patches_applied": self.patches_applied,
                "gear_errors": {k: v.to_dict() for k, v in self.gear_errors.items()},
                "took_ms": round(self.took_ms, 3)}


def _event_doc(e: NewEvent) -> dict[str, Any]:
    out: dict[str, Any] = {"id": e.event_id, "user_id": e.user_id, "type": e.type,
                           "properties": e.properties, "timestamp": iso(e.timestamp)}
    if e.name is not None:
        out["name"] = e.name
    return out


def _new_only(session: Session, workspace_id: int, events: list[NewEvent],
              result: IngestResult) -> list[NewEvent]:
    ids = [e.event_id for e in events]
    seen: set[str] = set()
    for start in range(0, len(ids), 500):
        seen.update(session.scalars(select(Event.event_id).where(
            Event.workspace_id == workspace_id, Event.event_id.in_(ids[start:start + 500]))))
    fresh, batch_ids = [], set()
    for e in events:
        if e.event_id in seen or e.event_id in batch_ids:
            result.duplicates += 1
            continue
        batch_ids.add(e.event_id)
        fresh.append(e)
    return fresh


@dataclass(frozen=True)
class _Patch:
    """A patch a gear returned for one event, to replay on the stored profile."""

    event_id: str
    user_id: str
    installation: str
    gear: str
    patch: Any


def _apply_results(engine: EngineManager, results: list[Any], e: NewEvent,
                   doc: dict[str, Any], result: IngestResult, patches: list[_Patch]) -> None:
    try:
        settle("gear_on_event", results)
    except HookDeclined:  # the event stands without any gear's patch
        results = [r for r in results if isinstance(r, GearFailure)]
    for r in results:
        if isinstance(r, GearFailure):
            result.error(r.installation, r.gear, r.error.code, r.error.message)
        elif isinstance(r, GearResult) and r.value is not None:
            try:
                apply_patch(doc, r.value)
            except PatchError as exc:
                # refused only once applied (an overflow, the size cap): the gear's counted failure
                result.error(r.installation, r.gear, exc.code, str(exc))
                engine.refuse(r.installation, exc.code, f"{r.gear}: {exc}")
                continue
            patches.append(_Patch(e.event_id, e.user_id, r.installation, r.gear, r.value))


def ingest(engine: EngineManager, session: Session, workspace: Workspace,
           events: list[NewEvent]) -> IngestResult:
    """Store ``events`` (validated) and run the extensions on them; the caller commits."""
    began = time.perf_counter()
    result = IngestResult()
    wg = engine.workspace(session, workspace)
    fresh = _new_only(session, workspace.id, events, result)
    if not fresh:
        result.took_ms = (time.perf_counter() - began) * 1000
        return result

    users = list(dict.fromkeys(e.user_id for e in fresh))
    rows = load_profiles(session, workspace.id, users)
    with_events = wg.reads_events()
    docs = {u: profile_doc(rows.get(u), u, recent_events(session, workspace.id, u)
                           if with_events and u in rows else [] if with_events else None)
            for u in users}
    with staged_state() as staged:
        patches = _call_gears(engine, session, wg, fresh, docs, with_events, result)
    for installation, code, message in _write(session, workspace.id, fresh, users, patches,
                                              staged, result):
        engine.refuse(installation, code, message)
    result.took_ms = (time.perf_counter() - began) * 1000
    return result


def _call_gears(engine: EngineManager, session: Session, wg: Any, fresh: list[NewEvent],
                docs: dict[str, dict[str, Any]], with_events: bool,
                result: IngestResult) -> list[_Patch]:
    """Run every extension on ``fresh`` (nothing is written); the patches that applied."""
    patches: list[_Patch] = []
    caller, failed = engine.hook(session, wg, "gear_on_event")
    for out in failed:
        _count_unavailable(out, len(fresh), result)
    impls = caller.get_hookimpls()
    if not impls:
        return patches
    # pluggy calls the last registered first: keep its order for the batched path
    proxies = [i.plugin for i in reversed(impls)
               if isinstance(i.plugin, GearProxy) and not (i.hookwrapper or i.wrapper)]
    batched = len(proxies) == len(impls)
    for run in _runs(fresh) if batched else ([e] for e in fresh):
        staged = []
        for e in run:
            doc = docs[e.user_id]
            event = _event_doc(e)
            if with_events:
                doc["events"].append(event)
                del doc["events"][:-RECENT_EVENTS]
            staged.append((e, event, doc))
        if batched:
            calls = [{"event": event, "profile": doc} for _, event, doc in staged]
            per_gear = [p.call_batch("gear_on_event", calls) for p in proxies]
            per_event = [[out[j] for out in per_gear] for j in range(len(staged))]
        else:
            per_event = [caller(event=event, profile=doc, config=None, ctx=None)
                         for _, event, doc in staged]
        for (e, _, doc), results in zip(staged, per_event, strict=True):
            _apply_results(engine, results, e, doc, result, patches)
    return patches


def _runs(events: list[NewEvent]) -> Iterator[list[NewEvent]]:
    """``events`` in order, cut so that no run holds two events of the same user."""
    run: list[NewEvent] = []
    users: set[str] = set()
    for e in events:
        if e.user_id in users:
            yield run
            run, users = [], set()
        run.append(e)
        users.add(e.user_id)
    if run:
        yield run


def _count_unavailable(out: Outcome, n: int, result: IngestResult) -> None:
    for _ in range(n):
        result.error(out.installation, out.gear, out.error or "load_failed", out.message or "")


def _chunks(values: list[Any], size: int = 500) -> Iterator[list[Any]]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


def _write(session: Session, workspace_id: int, fresh: list[NewEvent], users: list[str],
           patches: list[_Patch], staged: StagedState,
           result: IngestResult) -> list[tuple[str, str, str]]:
    """The batch's one short write: profiles, events, replayed patches, staged state;
    the patches refused as invalid once replayed (installation, code, message).

    Profiles are created and locked in user order before the events go in, so
    two batches touching the same users queue on the first of them instead of
    deadlocking.
    """
    now = utcnow()
    ordered = sorted(users)
    for chunk in _chunks(ordered):
        created = session.scalars(
            insert_for(session, Profile).values([
                {"workspace_id": workspace_id, "user_id": u, "attributes": {}, "traits": {},
                 "created_at": now, "updated_at": now} for u in chunk])
            .on_conflict_do_nothing(index_elements=["workspace_id", "user_id"])
            .returning(Profile.user_id)).all()
        result.profiles_created += len(created)
    rows: dict[str, Profile] = {}
    for chunk in _chunks(ordered):
        rows.update((r.user_id, r) for r in session.scalars(
            select(Profile).where(Profile.workspace_id == workspace_id,
                                  Profile.user_id.in_(chunk))
            .order_by(Profile.user_id).with_for_update()
            .execution_options(populate_existing=True)))
    inserted: set[str] = set()
    for chunk in _chunks(fresh):
        inserted.update(session.scalars(
            insert_for(session, Event).values([
                {"workspace_id": workspace_id, "event_id": e.event_id, "user_id": e.user_id,
                 "type": e.type, "name": e.name, "properties": e.properties,
                 "timestamp": e.timestamp, "received_at": now} for e in chunk])
            .on_conflict_do_nothing(index_elements=["workspace_id", "event_id"])
            .returning(Event.event_id)).all())
    result.accepted = len(inserted)
    result.duplicates += len(fresh) - len(inserted)
    refused = _replay(rows, patches, inserted, result, now)
    if inserted:
        for installation, gear, code, message in write_staged(session, staged):
            result.error(installation, gear, code, message)
            refused.append((installation, code, f"{gear}: {message}"))
    session.flush()
    return refused


def _replay(rows: dict[str, Profile], patches: list[_Patch], inserted: set[str],
            result: IngestResult, now: Any) -> list[tuple[str, str, str]]:
    """Apply the patches of the events this batch stored to the locked profile rows;
    those refused as invalid (an increment overflowing on a concurrent batch's value)."""
    docs = {u: profile_doc(row, u) for u, row in rows.items()}
    changed: set[str] = set()
    refused: list[tuple[str, str, str]] = []
    for p in patches:
        if p.event_id not in inserted or p.user_id not in docs:
            continue  # stored by a concurrent batch: a duplicate, its patches are not ours
        try:
            if apply_patch(docs[p.user_id], p.patch):
                changed.add(p.user_id)
            result.patches_applied += 1
        except PatchError as exc:  # the profile changed under a concurrent batch
            result.error(p.installation, p.gear, exc.code, str(exc))
            if exc.code == "invalid_result":
                refused.append((p.installation, exc.code, f"{p.gear}: {exc}"))
    for user, row in rows.items():
        if user in changed:
            row.attributes, row.traits = docs[user]["attributes"], docs[user]["traits"]
        row.updated_at = now
    return refused
