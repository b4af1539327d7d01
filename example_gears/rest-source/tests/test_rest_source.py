"""acme/rest-source, through the gears_sdk.testing fixtures."""

import pytest

URL = "https://api.example.com/v1/contacts"


def _contact(n, day):
    return {"id": f"c-{n}", "email": f"c{n}@example.com", "updated_at": f"2024-03-{day:02d}T00:00:00Z"}


def _sync(gear, cursor=None, config=None, limit=20):
    """Call gear_read until has_more is false, as the engine does; every batch."""
    batches = []
    for _ in range(limit):
        batch = gear.read("records", cursor=cursor, config=config)
        batches.append(batch)
        cursor = batch.cursor
        if not batch.has_more:
            return batches
    raise AssertionError("the sync did not end")


def test_cursor_pagination_follows_next_cursor_until_it_is_missing(gear):
    http = gear.ctx.http
    http.add("GET", URL, json={"data": [_contact(1, 1), _contact(2, 3)], "meta": {"next_cursor": "p2"}})
    http.add("GET", URL, json={"data": [_contact(3, 2)], "meta": {"next_cursor": None}})
    batches = _sync(gear)
    assert [len(b.records) for b in batches] == [2, 1]
    assert batches[0].has_more and batches[0].cursor == {"since": None, "newest": "2024-03-03T00:00:00Z",
                                                         "next": "p2"}
    assert batches[-1].cursor == {"since": "2024-03-03T00:00:00Z"}
    assert [r.params for r in http.requests] == [{"limit": 100}, {"limit": 100, "cursor": "p2"}]
    first = batches[0].records[0]
    assert first == {**_contact(1, 1), "user_id": "c-1"}


def test_next_sync_asks_only_for_changes(gear):
    gear.ctx.http.add("GET", URL, json={"data": [], "meta": {}})
    batch = gear.read("records", cursor={"since": "2024-03-03T00:00:00Z"})
    assert batch.records == [] and not batch.has_more
    assert batch.cursor == {"since": "2024-03-03T00:00:00Z"}
    assert gear.ctx.http.requests[0].params == {"limit": 100, "updated_since": "2024-03-03T00:00:00Z"}


def test_a_repeated_cursor_ends_the_sync(gear):
    gear.ctx.http.add("GET", URL, json={"data": [_contact(1, 1)], "meta": {"next_cursor": "same"}})
    batches = _sync(gear, cursor={"since": None, "next": "same"})
    assert len(batches) == 1 and not batches[0].has_more


@pytest.mark.parametrize(("style", "param", "positions"),
                         [("page", "page", [1, 2, 3]), ("offset", "offset", [0, 2, 3])])
def test_page_and_offset_pagination_stop_on_an_empty_page(gear, style, param, positions):
    http = gear.ctx.http
    http.add("GET", URL, json={"data": [_contact(1, 1), _contact(2, 2)]})
    http.add("GET", URL, json={"data": [_contact(3, 5)]})
    http.add("GET", URL, json={"data": []})
    config = {"pagination": style, "page_size": 2}
    batches = _sync(gear, config=config)
    assert [len(b.records) for b in batches] == [2, 1, 0]
    assert [r.params[param] for r in http.requests] == positions
    assert all(r.params["limit"] == 2 for r in http.requests)
    assert batches[-1].cursor == {"since": "2024-03-05T00:00:00Z"}


def test_records_path_and_items_shape_with_numeric_updates(gear):
    gear.ctx.http.add("GET", URL, json={"result": {"items": [{"sku": 7, "rev": 3}, {"sku": 8, "rev": 9}]}})
    config = {"stream_kind": "items", "records_path": "result.items", "id_field": "sku",
              "updated_field": "rev", "next_cursor_path": "result.next"}
    batch = gear.read("records", config=config)
    assert batch.records == [{"sku": 7, "rev": 3, "id": "7"}, {"sku": 8, "rev": 9, "id": "8"}]
    assert batch.cursor == {"since": 9} and not batch.has_more


def test_records_without_id_are_skipped_and_logged(gear):
    gear.ctx.http.add("GET", URL, json={"data": [{"email": "x@example.com"}, _contact(2, 1)]})
    batch = gear.read("records")
    assert [r["user_id"] for r in batch.records] == ["c-2"]
    assert "skipped 1 record(s) without 'id'" in gear.ctx.log.messages("warning")


def test_auth_header_from_the_secret(load_gear, gear):
    authed = load_gear(gear.path, secrets={"api_token": "tok-123"})
    authed.ctx.http.add("GET", URL, json={"data": []})
    authed.read("records")
    authed.read("records", config={"auth_header": "X-Api-Key", "auth_scheme": ""})
    assert [r.headers for r in authed.ctx.http.requests] == [{"Authorization": "Bearer tok-123"},
                                                             {"X-Api-Key": "tok-123"}]


def test_errors_are_clear(gear):
    http = gear.ctx.http
    http.add("GET", URL, status=500, body="boom")
    with pytest.raises(gear.module.SourceError, match="HTTP 500: boom"):
        gear.read("records")
    http.add("GET", "https://api.example.com/html", body="<html>")
    with pytest.raises(gear.module.SourceError, match="did not answer with JSON"):
        gear.read("records", config={"url": "https://api.example.com/html"})
    http.add("GET", "https://api.example.com/obj", json={"data": {"id": 1}})
    with pytest.raises(gear.module.SourceError, match="not a list of objects"):
        gear.read("records", config={"url": "https://api.example.com/obj"})


def test_check(gear):
    http = gear.ctx.http
    http.add("GET", URL, json={"data": [_contact(1, 1)]})
    assert gear.check().ok
    assert http.requests[0].params == {"limit": 1}
    http.add("GET", "https://api.example.com/private", status=401)
    result = gear.check({"url": "https://api.example.com/private"})
    assert not result.ok and "refused the token" in result.message
    http.add("GET", "https://api.example.com/other", json={"rows": []})
    result = gear.check({"url": "https://api.example.com/other"})
    assert not result.ok and "no 'data'" in result.message
    result = gear.check({"url": "https://crm.elsewhere.io/v1/contacts"})
    assert not result.ok and "network permission" in result.message


def test_streams(gear):
    [stream] = gear.streams({"stream_kind": "events"})
    assert stream.kind == "events" and stream.incremental
    assert not gear.streams({"updated_field": ""})[0].incremental
