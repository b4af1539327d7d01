"""Catalog search: full-text matching, facets, sorting and paging over the public gears.

One function, :func:`search`, serves the search page and the home page. Text
matching uses the database's own full-text index when it is there:

* SQLite: the FTS5 table ``gears_fts`` (kept in sync with ``gears`` by
  triggers created in the ``0005_search_index`` migration), ranked by bm25
  with the name weighted above title, categories and summary;
* PostgreSQL: ``to_tsvector('simple', …)`` over the same fields, which the
  migration backs with a GIN expression index, ranked by ``ts_rank``;
* anything else (or a database migrated before the index existed): ``LIKE``.

Every word the user types must match (as a prefix, so "rec" finds
"recommendations"); punctuation is dropped, so the query can never inject
full-text syntax. Facet counts are computed over the current query with every
other facet applied, so a user can see what switching a facet would give.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    Subquery,
    and_,
    column,
    exists,
    func,
    literal_column,
    or_,
    select,
    table,
    text,
)
from sqlalchemy.orm import Session, selectinload

from marketplace.models import Gear, Publisher
from marketplace.registry.viewer import Viewer

SORTS = {"relevance": "Best match", "installs": "Most installed", "newest": "Newest",
         "name": "Name"}
FTS_TABLE = "gears_fts"
PG_CONFIG = "simple"
MAX_WORDS = 8
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class CatalogQuery:
    """What the user asked for; empty strings mean "any"."""

    q: str = ""
    kind: str = ""
    category: str = ""
    publisher: str = ""
    sort: str = "relevance"
    page: int = 1
    per_page: int = 20


@dataclass(frozen=True)
class FacetValue:
    value: str
    count: int


@dataclass
class SearchResult:
    gears: list[Gear]
    total: int
    query: CatalogQuery
    facets: dict[str, list[FacetValue]] = field(default_factory=dict)

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.query.per_page))


def words(q: str) -> list[str]:
    """The search words of ``q``: lower-cased runs of letters and digits, at most 8."""
    return [w.lower() for w in _WORD.findall(q)][:MAX_WORDS]


def has_fts(session: Session) -> bool:
    """Whether the SQLite FTS5 index of the ``0005`` migration exists (cached per engine)."""
    bind = session.get_bind()
    cache = bind.__dict__.setdefault("_gears_has_fts", {})
    if "v" not in cache:
        cache["v"] = bool(session.execute(
            text("SELECT 1 FROM sqlite_master WHERE name = :n"), {"n": FTS_TABLE}).first())
    return bool(cache["v"])


def pg_document() -> ColumnElement[Any]:
    """The tsvector the PostgreSQL GIN index is built on (must match the migration)."""
    # Literal SQL, not bound parameters: PostgreSQL uses an expression index only
    # when the query's expression is textually the indexed one.
    return literal_column(
        f"to_tsvector('{PG_CONFIG}'::regconfig, coalesce(gears.name, '') || ' ' || "
        "coalesce(gears.title, '') || ' ' || coalesce(gears.summary, ''))")


def _text_match(session: Session, terms: list[str]) -> tuple[ColumnElement[bool], Any | None]:
    """A condition matching every term, and a rank expression (higher is better) or None."""
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite" and has_fts(session):
        expr = " AND ".join(f'"{t}"*' for t in terms)
        fts = table(FTS_TABLE, column("rowid"))
        ranked = (select(fts.c.rowid.label("gear_id"),
                         literal_column("-bm25(gears_fts, 10.0, 5.0, 1.0, 3.0)").label("rank"))
                  .where(text("gears_fts MATCH :fts_query").bindparams(fts_query=expr))
                  .subquery("fts"))
        return Gear.id.in_(select(ranked.c.gear_id)), ranked
    if dialect == "postgresql":
        tsquery = " & ".join(f"{t}:*" for t in terms)
        query = func.to_tsquery(literal_column(f"'{PG_CONFIG}'::regconfig"), tsquery)
        return pg_document().op("@@")(query), func.ts_rank(pg_document(), query)
    conds = []
    for t in terms:
        # autoescape: "_" and "%" in a word are literal characters, not wildcards.
        conds.append(or_(func.lower(Gear.name).contains(t, autoescape=True),
                         func.lower(Gear.title).contains(t, autoescape=True),
                         func.lower(Gear.summary).contains(t, autoescape=True)))
    return and_(*conds), None


def _categories(session: Session) -> Any:
    """The table-valued function listing a gear's categories, one row each."""
    fn = (func.json_each if session.get_bind().dialect.name == "sqlite"
          else func.json_array_elements_text)
    return fn(Gear.categories).table_valued("value").alias("c")


def _category_filter(session: Session, category: str) -> ColumnElement[bool]:
    cats = _categories(session)
    return exists(select(literal_column("1")).select_from(cats).where(cats.c.value == category))


def _base(session: Session, query: CatalogQuery, viewer: Viewer, *, skip: str = ""
          ) -> tuple[Select[Any], Any | None]:
    """Public gears matching ``query`` (ignoring the facet named by ``skip``)."""
    stmt = select(Gear).join(Publisher, Gear.publisher_id == Publisher.id)
    if not viewer.is_admin:
        stmt = stmt.where(Gear.listed.is_(True))
    rank = None
    terms = words(query.q)
    if terms:
        cond, rank = _text_match(session, terms)
        stmt = stmt.where(cond)
    if query.kind and skip != "kind":
        stmt = stmt.where(Gear.kind == query.kind)
    if query.publisher and skip != "publisher":
        stmt = stmt.where(Publisher.name == query.publisher)
    if query.category and skip != "category":
        stmt = stmt.where(_category_filter(session, query.category))
    return stmt, rank


def _order(stmt: Select[Any], sort: str, rank: Any | None) -> Select[Any]:
    if sort == "installs":
        return stmt.order_by(Gear.install_count.desc(), Gear.name)
    if sort == "newest":
        return stmt.order_by(Gear.created_at.desc(), Gear.id.desc())
    if sort == "name":
        return stmt.order_by(Gear.title, Gear.name)
    if rank is None:
        return stmt.order_by(Gear.install_count.desc(), Gear.name)
    if isinstance(rank, Subquery):  # the FTS5 subquery: join it for its rank column
        return stmt.join(rank, rank.c.gear_id == Gear.id).order_by(
            rank.c.rank.desc(), Gear.install_count.desc(), Gear.name)
    return stmt.order_by(rank.desc(), Gear.install_count.desc(), Gear.name)


def _count(session: Session, stmt: Select[Any]) -> int:
    return session.scalar(select(func.count()).select_from(
        stmt.with_only_columns(Gear.id).order_by(None).subquery())) or 0


def facet_counts(session: Session, query: CatalogQuery, viewer: Viewer, name: str
                 ) -> list[FacetValue]:
    """Counts per value of facet ``name`` (kind, publisher, category), most common first."""
    stmt, _ = _base(session, query, viewer, skip=name)
    ids = stmt.with_only_columns(Gear.id).order_by(None).subquery()
    if name == "kind":
        col: Any = Gear.kind
        counted = select(col, func.count()).where(Gear.id.in_(select(ids.c.id))).group_by(col)
    elif name == "publisher":
        col = Publisher.name
        counted = (select(col, func.count()).join(Gear, Gear.publisher_id == Publisher.id)
                   .where(Gear.id.in_(select(ids.c.id))).group_by(col))
    else:
        cats = _categories(session)
        counted = (select(cats.c.value, func.count()).select_from(Gear).join(cats, literal_column("1=1"))
                   .where(Gear.id.in_(select(ids.c.id))).group_by(cats.c.value))
    rows = session.execute(counted).all()
    values = [FacetValue(str(v), int(n)) for v, n in rows if v]
    return sorted(values, key=lambda f: (-f.count, f.value))


def search(session: Session, query: CatalogQuery, viewer: Viewer, *,
           with_facets: bool = True) -> SearchResult:
    """One page of gears matching ``query``, with the total and (optionally) facet counts."""
    if query.sort not in SORTS:
        query = replace(query, sort="relevance")
    stmt, rank = _base(session, query, viewer)
    total = _count(session, stmt)
    rows = session.scalars(
        _order(stmt, query.sort, rank)
        .options(selectinload(Gear.versions), selectinload(Gear.publisher))
        .offset((query.page - 1) * query.per_page).limit(query.per_page)
    ).all()
    result = SearchResult(list(rows), total, query)
    if with_facets:
        result.facets = {name: facet_counts(session, query, viewer, name)
                         for name in ("kind", "category", "publisher")}
    return result
