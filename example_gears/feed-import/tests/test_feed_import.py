"""acme/feed-import, through the gears_sdk.testing fixtures."""

import pytest

URL = "https://feeds.example.com/products.csv"
CSV = ("id,title,price,updated_at\n"
       "sku-1,Trail shoe,89.00,2024-03-01T10:00:00Z\n"
       "sku-2,Rain jacket,120.00,2024-03-02T08:30:00Z\n"
       "sku-3,Cap,15.00,2024-02-20T00:00:00Z\n")


def test_first_sync_imports_every_row_and_sets_the_cursor(gear):
    gear.ctx.http.add("GET", URL, body=CSV)
    batch = gear.read("feed")
    assert [r["id"] for r in batch.records] == ["sku-1", "sku-2", "sku-3"]
    assert batch.records[0] == {"id": "sku-1", "title": "Trail shoe", "price": "89.00",
                                "updated_at": "2024-03-01T10:00:00Z"}
    assert batch.cursor == "2024-03-02T08:30:00Z"
    assert batch.has_more is False


def test_next_sync_returns_only_newer_rows(gear):
    gear.ctx.http.add("GET", URL, body=CSV)
    batch = gear.read("feed", cursor="2024-03-01T10:00:00Z")
    assert [r["id"] for r in batch.records] == ["sku-2"]
    assert batch.cursor == "2024-03-02T08:30:00Z"


def test_nothing_new_keeps_the_cursor(gear):
    gear.ctx.http.add("GET", URL, body=CSV)
    batch = gear.read("feed", cursor="2024-03-02T08:30:00Z")
    assert batch.records == [] and batch.cursor == "2024-03-02T08:30:00Z"


@pytest.mark.parametrize("body", ["", "id,title,updated_at\n"])
def test_empty_feed_is_an_empty_batch(gear, body):
    gear.ctx.http.add("GET", URL, body=body)
    batch = gear.read("feed", cursor=None)
    assert batch.records == [] and batch.cursor is None and not batch.has_more


def test_json_feed_with_records_path_as_profiles_and_numeric_cursor(gear):
    url = "https://feeds.example.com/users.json"
    gear.ctx.http.add("GET", url, json={"data": {"users": [
        {"uid": "u1", "email": "ada@example.com", "version": 7},
        {"uid": "u2", "email": "bo@example.com", "version": 12},
    ]}})
    config = {"feed_url": url, "format": "json", "records_path": "data.users",
              "stream_kind": "profiles", "id_field": "uid", "updated_field": "version"}
    batch = gear.read("feed", cursor=10, config=config)
    assert batch.records == [{"user_id": "u2",
                              "attributes": {"email": "bo@example.com", "version": 12}}]
    assert batch.cursor == 12
    assert gear.streams(config)[0].kind == "profiles"


def test_events_shape(gear):
    url = "https://feeds.example.com/events.json"
    gear.ctx.http.add("GET", url, json=[{"user": "u1", "type": "purchase", "amount": 9.5,
                                         "timestamp": "2024-03-01T00:00:00Z"}])
    config = {"feed_url": url, "format": "json", "stream_kind": "events", "id_field": "user",
              "updated_field": "timestamp"}
    [record] = gear.read("feed", config=config).records
    assert record == {"user_id": "u1", "type": "purchase", "timestamp": "2024-03-01T00:00:00Z",
                      "properties": {"amount": 9.5}}


def test_malformed_rows_fail_the_sync_with_row_numbers(gear):
    gear.ctx.http.add("GET", URL, body=("id,title,updated_at\n"
                                        "sku-1,Shoe,2024-03-01T00:00:00Z\n"
                                        ",No id,2024-03-01T00:00:00Z\n"
                                        "sku-3,Bad date,yesterday\n"))
    expected = r"2 malformed row\(s\).*row 2: id=''.*row 3: .*'yesterday'"
    with pytest.raises(gear.module.FeedError, match=expected):
        gear.read("feed")


def test_malformed_rows_can_be_skipped_and_are_logged(gear):
    gear.ctx.http.add("GET", URL, body=("id,updated_at\n"
                                        "sku-1,2024-03-01T00:00:00Z\n"
                                        "sku-2,\n"))
    batch = gear.read("feed", config={"skip_malformed": True})
    assert [r["id"] for r in batch.records] == ["sku-1"]
    assert "row 2" in gear.ctx.log.messages("warning")[0]


def test_csv_line_with_extra_fields_fails(gear):
    gear.ctx.http.add("GET", URL, body="id,updated_at\nsku-1,2024-03-01,oops\n")
    with pytest.raises(gear.module.FeedError, match="CSV line 2 has more fields than the header"):
        gear.read("feed")


def test_invalid_json_and_wrong_shape_fail_clearly(gear):
    url = "https://feeds.example.com/x.json"
    gear.ctx.http.add("GET", url, body="{not json")
    with pytest.raises(gear.module.FeedError, match="not valid JSON"):
        gear.read("feed", config={"feed_url": url, "format": "json"})
    gear.ctx.http.add("GET", "https://feeds.example.com/y.json", json={"items": []})
    with pytest.raises(gear.module.FeedError, match="array of objects"):
        gear.read("feed", config={"feed_url": "https://feeds.example.com/y.json", "format": "json"})


def test_auth_header_comes_from_the_secret(load_gear, gear):
    authed = load_gear(gear.path, secrets={"auth_value": "Bearer s3cret"})
    authed.ctx.http.add("GET", URL, body=CSV)
    authed.read("feed")
    assert authed.ctx.http.requests[0].headers == {"Authorization": "Bearer s3cret"}
    gear.ctx.http.add("GET", URL, body=CSV)
    gear.read("feed")
    assert gear.ctx.http.requests[0].headers == {}


def test_refused_credentials_fail_the_read(gear):
    gear.ctx.http.add("GET", URL, status=401)
    with pytest.raises(gear.module.FeedError, match=r"refused the credentials \(HTTP 401\)"):
        gear.read("feed")


def test_check_ok_falls_back_to_get_and_reports_errors(gear):
    gear.ctx.http.add("HEAD", URL, status=200)
    assert gear.check().ok
    gear.ctx.http.add("HEAD", "https://feeds.example.com/a.csv", status=405)
    gear.ctx.http.add("GET", "https://feeds.example.com/a.csv", body=CSV)
    assert gear.check({"feed_url": "https://feeds.example.com/a.csv"}).ok
    gear.ctx.http.add("HEAD", "https://feeds.example.com/gone.csv", status=404)
    result = gear.check({"feed_url": "https://feeds.example.com/gone.csv"})
    assert not result.ok and "no feed at" in result.message


def test_check_explains_an_undeclared_host(gear):
    result = gear.check({"feed_url": "https://data.other.org/feed.csv"})
    assert not result.ok and "network permission" in result.message
    assert gear.ctx.http.requests == []


def test_streams_describe_the_feed(gear):
    [stream] = gear.streams()
    assert stream.name == "feed" and stream.kind == "items" and stream.incremental
