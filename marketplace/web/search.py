"""The catalog pages search through :mod:`marketplace.registry.search`, which the
JSON API shares; these names are re-exported for the pages."""

from marketplace.registry.search import (
    FTS_TABLE,
    KINDS,
    SORTS,
    CatalogQuery,
    FacetValue,
    SearchResult,
    _has_fts,
    facet_counts,
    pg_document,
    search,
    words,
)

__all__ = ["FTS_TABLE", "KINDS", "SORTS", "CatalogQuery", "FacetValue", "SearchResult",
           "_has_fts", "facet_counts", "pg_document", "search", "words"]
