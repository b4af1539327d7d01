"""Connectors: test a connection, sync streams in, export segments out.

A sync reads each stream the connector lists (``gear_streams``) page by page
(``gear_read``) from the cursor stored for that installation and stream.
Each page's records and the cursor it ends at commit in **one
transaction**, so a sync that fails half-way resumes after the last page
that was applied, never re-importing it and never skipping records. What a
record becomes depends on the stream's kind: ``profiles`` merge into
profiles, ``items`` upsert catalog items, ``events`` go through ingestion
(extensions included). A record may write only what the connector's manifest
declares (``permissions.profile.write``, ``catalog.write``, ``events.write``):
one that writes anything else is refused whole, counted as ``refused`` and
listed with the path and the reason. Invalid records are skipped and counted
with their problems; a failing ``gear_read`` ends the sync with the cursor
unchanged.

An export walks a segment's members and pushes them to ``gear_write`` in
batches; each record holds only the profile fields the connector declares
it reads.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from gears_sdk.manifest import Permissions
from gears_sdk.permissions import field_allowed, filter_profile, record_refusals
from gears_sdk.types import CheckResult, RecordBatch, StreamInfo, WriteResult
from marketplace.db import utcnow
from marketplace.engine.audience import iter_members
from marketplace.engine.ingest import ingest
from marketplace.engine.manager import EngineManager, InstalledGear, WorkspaceGears
from marketplace.engine.models import (
    CatalogItem,
    ConnectorCursor,
    Profile,
    Segment,
    SyncRun,
    SyncStatus,
)
from marketplace.engine.profiles import PatchError, check_profile
from marketplace.engine.upserts import ensure_rows
from marketplace.engine.validation import (
    ITEM_FIELDS,
    ProblemDetail,
    check_event,
    check_item,
    invalid,
    problem,
)
from marketplace.errors import MarketplaceError
from marketplace.models import Workspace
from marketplace.runtime import HookDeclined, settle
from marketplace.workspaces.models import Installation as InstallationRow

MAX_PAGES_PER_STREAM = 1000
#: Profile records one import may hold (as many as events in one batch).
MAX_IMPORT = 1000
EXPORT_BATCH = 500
#: A run still "running" that made no progress (a page) for this long died with its
#: process (an engine node killed mid-sync): the next sync marks it failed and runs. Far
#: longer than one page may take (one gear call's deadline and its records' write).
STALE_RUN = timedelta(minutes=10)
MAX_PROBLEMS_KEPT = 20


class SyncFailed(Exception):
    """A gear call the sync cannot go on without failed."""


def connector(engine: EngineManager, session: Session, workspace: Workspace,
              installation: str) -> tuple[WorkspaceGears, InstalledGear]:
    """The workspace's connector installation ``installation``; 404/409 otherwise."""
    wg = engine.workspace(session, workspace)
    inst = wg.installations.get(installation)
    if inst is None:
        raise MarketplaceError(404, "installation_not_found", f"no installation {installation!r} "
                               f"in the workspace {workspace.name!r}")
    if inst.kind != "connector":
        raise MarketplaceError(409, "not_a_connector", f"{inst.gear} is a {inst.kind}, not a "
                               "connector")
    return wg, inst


def _call(engine: EngineManager, session: Session, wg: WorkspaceGears, installation: str,
          hook: str, **kwargs: Any) -> Any:
    caller, why = engine.hook_for(session, wg, installation, hook)
    if caller is None:
        assert why is not None
        raise SyncFailed(f"{hook}: {why.message}")
    results = caller(**kwargs, config=None, ctx=None)
    if not results:
        raise SyncFailed(f"{hook}: the connector did not answer")
    try:
        settled = settle(hook, results[:1])
    except HookDeclined as exc:
        raise SyncFailed(str(exc)) from None
    return settled[0].value if settled else None


def check(engine: EngineManager, session: Session, workspace: Workspace,
          installation: str) -> dict[str, Any]:
    """``gear_check``: ``{"ok", "message", "details"}``; a failing gear is ``ok: false``."""
    wg, inst = connector(engine, session, workspace, installation)
    try:
        value = _call(engine, session, wg, inst.id, "gear_check")
    except SyncFailed as exc:
        return {"ok": False, "message": str(exc), "details": {}}
    result = value if isinstance(value, CheckResult) else CheckResult(ok=True)
    return {"ok": bool(result.ok), "message": result.message, "details": result.details}


# -- records ------------------------------------------------------------------------------


def import_profiles(session: Session, workspace_id: int, records: Any) -> int:
    """Merge ``{user_id, attributes, traits}`` records into profiles as a connector's
    ``profiles`` stream does; 422 listing every problem, nothing imported, if any is bad.
    The caller commits."""
    problems: list[ProblemDetail] = []
    records = records if isinstance(records, list) else []
    if not 1 <= len(records) <= MAX_IMPORT:
        problems.append(problem("$.profiles", f"a list of 1 to {MAX_IMPORT} profile records"))
        raise invalid("the profiles cannot be imported", problems, "invalid_profiles")
    merged = _apply_profiles(session, workspace_id, list(enumerate(records)), problems)
    if problems:
        session.rollback()
        for p in problems:
            p["path"] = p["path"].replace("$.records", "$.profiles", 1)
        raise invalid(f"{len(problems)} profile record(s) cannot be imported", problems,
                      "invalid_profiles")
    return merged


def _apply_profiles(session: Session, workspace_id: int, records: list[tuple[int, Any]],
                    problems: list[ProblemDetail]) -> int:
    good: dict[str, dict[str, Any]] = {}
    for i, rec in records:
        path = f"$.records[{i}]"
        if not isinstance(rec, dict) or not isinstance(rec.get("user_id"), str) \
                or not rec["user_id"] or len(rec["user_id"]) > 200:
            problems.append(problem(f"{path}.user_id", "a profile record needs a user_id"))
            continue
        extra = set(rec) - {"user_id", "attributes", "traits"}
        bad = [k for k in ("attributes", "traits") if not isinstance(rec.get(k, {}), dict)]
        if extra or bad:
            problems.append(problem(path, "a profile record holds user_id, attributes and "
                                    "traits (objects)"))
            continue
        merged = good.setdefault(rec["user_id"], {"attributes": {}, "traits": {}})
        merged["attributes"].update(rec.get("attributes") or {})
        merged["traits"].update(rec.get("traits") or {})
    for user, data in list(good.items()):
        try:  # a record too large alone is refused before its profile row is created
            check_profile(data)
        except PatchError as exc:
            problems.append(problem(f"$.records[user_id={user!r}]", str(exc), "too_large"))
            del good[user]
    if not good:
        return 0
    ensure_rows(session, Profile, "user_id", workspace_id, sorted(good),
                {"attributes": {}, "traits": {}, "created_at": utcnow(), "updated_at": utcnow()})
    rows = {r.user_id: r for r in session.scalars(select(Profile).where(
        Profile.workspace_id == workspace_id, Profile.user_id.in_(list(good))))}
    now = utcnow()
    applied = 0
    for user, data in good.items():
        row = rows.get(user)
        old = {"attributes": row.attributes or {}, "traits": row.traits or {}} if row else None
        new = {k: {**(old or {}).get(k, {}), **data[k]} for k in ("attributes", "traits")}
        try:
            check_profile(new, old)
        except PatchError as exc:
            problems.append(problem(f"$.records[user_id={user!r}]", str(exc), "too_large"))
            continue
        applied += 1
        if row is None:
            session.add(Profile(workspace_id=workspace_id, user_id=user, created_at=now,
                                updated_at=now, **new))
        else:
            row.attributes, row.traits, row.updated_at = new["attributes"], new["traits"], now
    return applied


def upsert_items(session: Session, workspace_id: int, items: list[dict[str, Any]]) -> int:
    """Insert or update catalog items (validated column values); how many."""
    ids = [i["item_id"] for i in items]
    ensure_rows(session, CatalogItem, "item_id", workspace_id, sorted(ids),
                {"title": "", "attributes": {}, "active": True, "updated_at": utcnow()})
    rows = {r.item_id: r for r in session.scalars(select(CatalogItem).where(
        CatalogItem.workspace_id == workspace_id, CatalogItem.item_id.in_(ids)))}
    now = utcnow()
    for values in items:
        row = rows.get(values["item_id"])
        if row is None:
            row = CatalogItem(workspace_id=workspace_id)
            session.add(row)
        for key, value in values.items():
            setattr(row, key, value)
        row.updated_at = now
    return len(items)


def foreign_record(record: Any, known: frozenset[str] | set[str], into: str) -> Any:
    """A record from a foreign source, fitted to the engine's shape.

    Feeds carry columns the engine has no field for (``updated_at``, ``sku``,
    ``email``…): they are kept under ``into`` (``attributes``) instead of
    refusing the record, and a numeric string in ``price`` becomes a number.
    What still does not fit is reported by the usual checks.
    """
    if not isinstance(record, dict):
        return record
    out = {k: v for k, v in record.items() if k in known}
    extra = {k: v for k, v in record.items() if k not in known}
    nested = record.get(into, {})
    if extra and isinstance(nested, dict):
        out[into] = {**extra, **nested}
    price = out.get("price")
    if isinstance(price, str):
        try:
            out["price"] = float(price.strip())
        except ValueError:
            pass
    return out


PROFILE_FIELDS = frozenset({"user_id", "attributes", "traits"})


def permitted(permissions: Permissions, kind: str, records: list[Any],
              problems: list[ProblemDetail]) -> list[tuple[int, Any]]:
    """``(index, record)`` of the records the connector's manifest lets it write.

    A record writing anything undeclared is refused whole, never half-applied:
    each reason goes into ``problems`` with the code ``not_permitted`` and
    the path of the field (:func:`gears_sdk.permissions.record_refusals`).
    """
    kept = []
    for i, rec in enumerate(records):
        refusals = record_refusals(permissions, kind, rec)
        for path, why in refusals:
            problems.append(problem(f"$.records[{i}]" + (f".{path}" if path else ""), why,
                                    "not_permitted"))
        if not refusals:
            kept.append((i, rec))
    return kept


def _fitted(kind: str, records: list[Any]) -> list[Any]:
    if kind == "profiles":
        return [foreign_record(r, PROFILE_FIELDS, "attributes") for r in records]
    if kind == "items":
        return [foreign_record(r, ITEM_FIELDS, "attributes") for r in records]
    return records


def _apply(engine: EngineManager, session: Session, workspace: Workspace, inst: InstalledGear,
           kind: str, records: list[Any], problems: list[ProblemDetail]) -> tuple[int, int]:
    """Apply one page's records: ``(applied, refused)``."""
    records = _fitted(kind, records)
    allowed = permitted(inst.permissions, kind, records, problems)
    refused = len(records) - len(allowed)
    if kind == "profiles":
        return _apply_profiles(session, workspace.id, allowed, problems), refused
    if kind == "items":
        items = [(check_item(r, f"$.records[{i}]", problems), r) for i, r in allowed]
        good = list({v["item_id"]: (v, r) for v, r in items if v is not None}.values())
        whole = field_allowed("attributes", inst.permissions.catalog.write)
        return (update_items(session, workspace.id, good, whole) if good else 0), refused
    now = utcnow()
    events = [check_event(r, f"$.records[{i}]", problems, now) for i, r in allowed]
    good_events = [e for e in events if e is not None]
    return (ingest(engine, session, workspace, good_events).accepted if good_events else 0,
            refused)


def update_items(session: Session, workspace_id: int,
                 items: list[tuple[dict[str, Any], dict[str, Any]]],
                 whole_attributes: bool) -> int:
    """Insert or update catalog items from connector records; how many.

    A record changes only the fields it carries (a new item starts from the
    defaults), so a connector allowed to write ``title`` cannot reset a
    ``price`` by leaving it out; its ``attributes`` are merged key by key
    unless the connector may write ``attributes`` as a whole.
    """
    ids = [values["item_id"] for values, _ in items]
    now = utcnow()
    created = set(ensure_rows(session, CatalogItem, "item_id", workspace_id, sorted(ids),
                              {"title": "", "attributes": {}, "active": True,
                               "updated_at": now}))
    rows = {r.item_id: r for r in session.scalars(select(CatalogItem).where(
        CatalogItem.workspace_id == workspace_id, CatalogItem.item_id.in_(ids)))}
    for values, record in items:
        row = rows[values["item_id"]]
        if values["item_id"] in created:
            for key, value in values.items():
                setattr(row, key, value)
        else:
            for key in set(record) & (ITEM_FIELDS - {"id", "attributes"}):
                setattr(row, key, values[key])
            if "attributes" in record:
                row.attributes = (values["attributes"] if whole_attributes
                                  else {**(row.attributes or {}), **values["attributes"]})
        row.updated_at = now
    return len(items)


# -- sync ---------------------------------------------------------------------------------


def _start_run(session: Session, workspace: Workspace, installation: str,
               trigger: str) -> SyncRun:
    # The installation's row, locked until the run is committed: two nodes (or threads)
    # starting a sync of one connector at once check and insert one after the other, so
    # the second sees the first's run (SQLite ignores the lock; several nodes need
    # PostgreSQL).
    session.execute(select(InstallationRow.id).where(InstallationRow.id == installation)
                    .with_for_update())
    now = utcnow()
    alive = func.coalesce(SyncRun.heartbeat_at, SyncRun.started_at) > now - STALE_RUN
    running = session.scalar(select(SyncRun).where(
        SyncRun.installation_id == installation, SyncRun.status == SyncStatus.running, alive))
    if running is not None:
        raise MarketplaceError(409, "sync_running", f"a sync of {installation} is already "
                               f"running (run {running.id}); wait for it to end")
    session.execute(update(SyncRun).where(
        SyncRun.installation_id == installation, SyncRun.status == SyncStatus.running,
        ~alive).values(status=SyncStatus.failed, finished_at=now, error=(
            "stopped making progress: the engine process running it stopped "
            f"(no page for {int(STALE_RUN.total_seconds() // 60)} minutes)")))
    run = SyncRun(workspace_id=workspace.id, installation_id=installation, trigger=trigger,
                  status=SyncStatus.running, started_at=now, heartbeat_at=now, stats={})
    session.add(run)
    session.commit()
    return run


def _beat(session: Session, run_id: int) -> None:
    """The run made progress (committed with the caller's transaction)."""
    session.execute(update(SyncRun).where(SyncRun.id == run_id).values(heartbeat_at=utcnow()))


def _sync_stream(engine: EngineManager, session: Session, workspace: Workspace,
                 wg: WorkspaceGears, inst: InstalledGear, stream: StreamInfo,
                 stats: dict[str, Any], run_id: int) -> None:
    installation = inst.id
    mine = stats.setdefault(stream.name, {"kind": stream.kind, "pages": 0, "records": 0,
                                          "rejected": 0, "refused": 0, "problems": []})
    for _ in range(MAX_PAGES_PER_STREAM):
        row = session.get(ConnectorCursor, (installation, stream.name))
        batch = _call(engine, session, wg, installation, "gear_read", stream=stream.name,
                      cursor=row.cursor if row is not None else None)
        if batch is None:
            return
        assert isinstance(batch, RecordBatch)
        problems: list[ProblemDetail] = []
        applied, refused = _apply(engine, session, workspace, inst,
                                  stream.kind, list(batch.records), problems)
        if row is None:
            row = ConnectorCursor(installation_id=installation, stream=stream.name,
                                  workspace_id=workspace.id, records=0)
            session.add(row)
        row.cursor, row.updated_at = batch.cursor, utcnow()
        row.records = (row.records or 0) + applied
        _beat(session, run_id)
        session.commit()  # the page's records, its cursor and the run's heartbeat, together
        mine["pages"] += 1
        mine["records"] += applied
        mine["rejected"] += len(problems)
        mine["refused"] += refused
        mine["problems"] = (mine["problems"] + problems)[:MAX_PROBLEMS_KEPT]
        if not batch.has_more:
            return


def sync(engine: EngineManager, session: Session, workspace: Workspace, installation: str,
         *, trigger: str = "manual", streams: list[str] | None = None) -> dict[str, Any]:
    """Run one sync of a connector installation and return its run as JSON."""
    wg, inst = connector(engine, session, workspace, installation)
    run = _start_run(session, workspace, inst.id, trigger)
    stats: dict[str, Any] = {}
    try:
        listed = _call(engine, session, wg, inst.id, "gear_streams") or []
        chosen = [s for s in listed if streams is None or s.name in streams]
        for stream in chosen:
            _sync_stream(engine, session, workspace, wg, inst, stream, stats, run.id)
        run.status, run.error = SyncStatus.succeeded, None
    except SyncFailed as exc:
        session.rollback()
        run.status, run.error = SyncStatus.failed, str(exc)[:4000]
    except Exception as exc:
        session.rollback()
        run.status, run.error = SyncStatus.failed, f"internal error: {type(exc).__name__}"
        _finish(session, run, stats)
        raise
    _finish(session, run, stats)
    return run_json(run)


def _finish(session: Session, run: SyncRun, stats: dict[str, Any]) -> None:
    run.stats, run.finished_at = stats, utcnow()
    session.add(run)
    session.commit()


def run_json(run: SyncRun) -> dict[str, Any]:
    return {"id": run.id, "installation": run.installation_id, "trigger": run.trigger,
            "status": run.status.value, "started_at": run.started_at.isoformat(),
            "finished_at": run.finished_at.isoformat() if run.finished_at else None,
            "streams": run.stats or {}, "error": run.error}


# -- export -------------------------------------------------------------------------------


def _default_stream(engine: EngineManager, session: Session, wg: WorkspaceGears,
                    installation: str) -> str:
    try:
        listed = _call(engine, session, wg, installation, "gear_streams") or []
    except SyncFailed:
        return "segment"
    names = [StreamInfo.from_value(x).name for x in listed]
    if len(names) == 1:
        return names[0]
    if "segment" in names or not names:
        return "segment"
    raise MarketplaceError(422, "stream_required", "this connector has several streams; name "
                           f"one of {', '.join(names)} as 'stream'",
                           [problem("$.stream", "one of " + ", ".join(names), "required")])


def export(engine: EngineManager, session: Session, workspace: Workspace, segment: str,
           installation: str, *, stream: str | None = None,
           batch_size: int = EXPORT_BATCH) -> dict[str, Any]:
    """Push the segment's members to the connector's ``gear_write``, batch by batch.

    Without ``stream`` the connector's own list decides: its only stream, or
    the one named ``segment``; otherwise the caller must name one.
    """
    wg, inst = connector(engine, session, workspace, installation)
    seg = session.scalar(select(Segment).where(Segment.workspace_id == workspace.id,
                                               Segment.name == segment))
    if seg is None:
        raise MarketplaceError(404, "segment_not_found", f"no segment {segment!r}")
    if stream is None:
        stream = _default_stream(engine, session, wg, inst.id)
    out: dict[str, Any] = {"segment": segment, "installation": inst.id, "stream": stream,
                           "members": 0, "written": 0, "failed": 0, "batches": 0,
                           "errors": [], "ok": True}
    batch: list[dict[str, Any]] = []

    def flush() -> None:
        value = _call(engine, session, wg, inst.id, "gear_write", stream=stream, records=batch)
        result = value if isinstance(value, WriteResult) else WriteResult(written=len(batch))
        out["written"] += result.written
        out["failed"] += result.failed
        out["errors"] = (out["errors"] + list(result.errors))[:MAX_PROBLEMS_KEPT]
        out["batches"] += 1
        batch.clear()

    try:
        for doc in iter_members(session, workspace.id, seg.rule):
            out["members"] += 1
            batch.append({**filter_profile(doc, inst.reads, inst.permissions.events.read),
                          "user_id": doc["user_id"]})
            if len(batch) >= batch_size:
                flush()
        if batch:
            flush()
    except SyncFailed as exc:
        out["ok"] = False
        out["errors"] = (out["errors"] + [str(exc)])[:MAX_PROBLEMS_KEPT]
    return out
