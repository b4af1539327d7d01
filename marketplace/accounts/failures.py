"""Failed authentications counted in the database, shared by every process and replica.

A per-process count lets an attacker multiply the limit by the number of
workers and replicas; the database is the store they all share (the design's
default for shared fast state). Each key (a token's hash, an address, an
account — see :mod:`marketplace.auth`) has one row: a fixed window that starts
at its first failure and counts failures until the window has passed. Only
failures write, and one atomic upsert does it, on its own short transaction so
the request's rollback does not undo the count.

Rows are bounded: a failing address is refused before it is counted once over
its limit, so it cannot mint rows; expired rows are swept as new ones come.
"""

from __future__ import annotations

import hashlib
import math
from datetime import timedelta
from typing import cast

from sqlalchemy import Engine, Table, case, delete, literal, select
from sqlalchemy.dialects import postgresql, sqlite

from marketplace.db import UTCDateTime, utcnow
from marketplace.models import AuthFailure


def _key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


class DatabaseLimiter:
    """The :class:`~marketplace.ratelimit.SlidingWindowLimiter` interface over
    the ``auth_failures`` table: ``retry_after``, ``hit``, ``reset``."""

    def __init__(self, engine: Engine, *, limit: int, window: float) -> None:
        self.engine = engine
        self.limit = limit
        self.window = timedelta(seconds=window)

    def retry_after(self, key: str) -> int:
        """Seconds until ``key`` may try again; 0 when it may now."""
        with self.engine.connect() as conn:
            row = conn.execute(select(AuthFailure.window_start, AuthFailure.count)
                               .where(AuthFailure.key == _key(key))).first()
        if row is None:
            return 0
        window_start, count = row
        if count < self.limit:
            return 0
        left = (window_start + self.window - utcnow()).total_seconds()
        return max(1, math.ceil(left)) if left > 0 else 0

    def hit(self, key: str) -> None:
        """Count one failure for ``key`` (a new window when the last one has passed)."""
        now = utcnow()
        cutoff = now - self.window
        table = cast(Table, AuthFailure.__table__)
        insert = (postgresql.insert if self.engine.dialect.name == "postgresql"
                  else sqlite.insert)(table).values(key=_key(key), window_start=now, count=1)
        expired = table.c.window_start <= cutoff
        upsert = insert.on_conflict_do_update(index_elements=[table.c.key], set_={
            "count": case((expired, 1), else_=table.c.count + 1),
            "window_start": case((expired, literal(now, UTCDateTime())),
                                 else_=table.c.window_start),
        })
        with self.engine.begin() as conn:
            conn.execute(upsert)
            conn.execute(delete(AuthFailure).where(AuthFailure.window_start <= cutoff))

    def reset(self, key: str) -> None:
        """Forget ``key``'s failures."""
        with self.engine.begin() as conn:
            conn.execute(delete(AuthFailure).where(AuthFailure.key == _key(key)))
