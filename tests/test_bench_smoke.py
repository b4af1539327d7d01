"""The benchmark code keeps working: the report on canned numbers, the load tools, and the
cheapest section in a tiny form. Nothing here asserts a timing."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

import bench.__main__ as bench_main
from bench import load, sandbox
from bench.report import Goal, Row, Section, render_markdown, render_text
from bench.util import BenchError, percentile, require_loopback

WRK_OUTPUT = """\
Running 10s test @ http://127.0.0.1:8000/x
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     5.01ms    1.20ms  30.00ms   90.00%
  31000 requests in 10.00s, 600.00MB read
  Socket errors: connect 0, read 1, write 0, timeout 2
  Non-2xx or 3xx responses: 4
Requests/sec:   3100.50
Transfer/sec:     60.00MB
"""


def canned() -> Section:
    sec = Section("registry", "Registry vs peers", primary="gears",
                  method=["canned numbers"], versions={"gears": "1.0", "peer": "2.0"})
    sec.rows = [Row("download req/s", "gears", "/s", [300.0, 310.0, 290.0]),
                Row("download req/s", "peer", "/s", [100.0, 100.0, 100.0]),
                Row("download req/s", "absent", "/s", note="not installed: no npm")]
    sec.goals = [Goal("download", ">= 1.5 x fastest peer", "3.00 x peer", True),
                 Goal("engine", "< 10 ms", "engine not available", None)]
    return sec


def test_report_renders_ratios_spreads_and_goals() -> None:
    sec = canned()
    assert sec.ratios(sec.rows[0]) == [("peer", 3.0)]
    text = render_text([sec])
    assert "3.00x peer" in text and "not installed: no npm" in text
    assert "missed" not in text and "not measured" in text
    md = render_markdown([sec], {"CPU": "test"}, command="make bench",
                         caveats=["a caveat"])
    assert md.startswith("# Performance") and "| CPU | test |" in md
    assert "| download | >= 1.5 x fastest peer | 3.00 x peer | met |" in md
    assert "- a caveat" in md and "varied by" in md


def test_a_failing_section_is_reported_and_the_others_still_run(monkeypatch) -> None:
    def runner(name: str, quick: bool) -> Any:
        if name == "search":
            def boom() -> Section:
                raise RuntimeError("no database")
            return boom
        return lambda: Section(name, name)

    monkeypatch.setattr(bench_main, "_runner", runner)
    sections = bench_main.run_sections(["search", "sandbox"], quick=True)
    assert [s.key for s in sections] == ["search", "sandbox"]
    assert "no database" in sections[0].notes[0]


def test_wrk_output_is_parsed() -> None:
    result = load.parse_wrk(WRK_OUTPUT)
    assert result.requests_per_s == 3100.5 and result.requests == 31000
    assert result.errors == 7 and result.tool == "wrk"


def test_percentile() -> None:
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([1.0, 2.0], 100) == 2.0
    assert percentile([5.0], 99) == 5.0


def test_load_goes_to_loopback_only() -> None:
    assert require_loopback("http://127.0.0.1:9/x")
    for url in ("http://10.0.0.1/x", "http://example.com/x", "http://192.168.1.1/"):
        with pytest.raises(BenchError, match="loopback"):
            require_loopback(url)


def test_python_load_generator_stops_by_itself() -> None:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        result = load.python_load(f"http://127.0.0.1:{server.server_address[1]}/",
                                  concurrency=2, seconds=0.3)
    finally:
        server.shutdown()
        server.server_close()
    assert result.requests > 0 and result.errors == 0 and result.tool == "python"


@pytest.mark.sandbox
@pytest.mark.timeout(120)
def test_sandbox_section_in_a_tiny_form() -> None:
    sec = sandbox.run(sandbox.SandboxSize.tiny())
    metrics = {(r.metric, r.subject) for r in sec.rows if r.samples}
    assert ("hook call median", "sandboxed") in metrics
    assert ("hook call median", "in-process") in metrics
    assert ("worker cold start", "sandboxed") in metrics
    assert ("install to first call", "sandboxed") in metrics
    assert {g.name for g in sec.goals} == {"sandboxed hook call median",
                                            "worker cold start median"}
    assert not [n for n in sec.notes if "failed" in n]
