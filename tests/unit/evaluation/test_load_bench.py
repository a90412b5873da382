"""`load-bench`'s pure parts: wrk's figures → rows and verdicts, the body templates, /proc parsing."""
import json

import pytest

from backend.evaluation.datasets import Dataset
from backend.evaluation.load_bench import (
    LoadBenchError, Route, annotation_template, descendants, format_report, lua_string, parse_ppid, parse_wrk,
    phase_seconds, predict_template, render, route_row, split_template,
)
from tests.conftest import load_fixture

DATA = Dataset("sms", ("ham", "spam"), ("hi", "WIN £100"), (0, 1))
WRK_OUT = """Running 30s test @ http://127.0.0.1:40000/
  1 threads and 4 connections
  1200 requests in 30.00s, 1.2MB read
Requests/sec:     40.00
LOADBENCH {"requests": 1200, "duration_us": 30000000, "non2xx": 2, "unexpected": 0, "connect": 0, "read": 1, "write": 0, "timeout": 0, "p50_us": 1500, "p90_us": 4000, "p99_us": 60250, "max_us": 90000}
"""


def route(name: str) -> Route:
    return Route(name=name, method="GET", path="/", connections=4, timeout_s=5)


def test_the_done_line_is_found_among_wrks_own_summary():
    raw = parse_wrk(WRK_OUT)
    assert raw["requests"] == 1200 and raw["p99_us"] == 60250


def test_no_done_line_is_a_named_error_with_what_wrk_said():
    with pytest.raises(LoadBenchError, match="unable to connect"):
        parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_errors_add_non_2xx_and_socket_errors_and_any_error_misses_the_target():
    row = route_row("mixed", route("health"), parse_wrk(WRK_OUT))
    assert row["errors"] == 3
    assert (row["p50_ms"], row["p99_ms"], row["req_per_s"]) == (1.5, 60.2, 40.0)
    assert row["target"] == "p99 < 50 ms, 0 errors" and row["met"] is False


def test_p99_decides_where_there_are_no_errors_and_predict_has_no_latency_bound():
    raw = dict(parse_wrk(WRK_OUT), non2xx=0, read=0)
    assert route_row("alone", route("webhook"), raw)["met"] is True
    assert route_row("alone", route("health"), raw)["met"] is False
    slow = dict(raw, p99_us=9_000_000)
    assert route_row("mixed", route("predict"), slow)["met"] is True
    assert route_row("mixed", route("predict"), dict(raw, requests=0))["met"] is False


def test_the_report_tables_say_what_missed():
    row = route_row("mixed", route("health"), parse_wrk(WRK_OUT))
    report = {"rows": [row], "rss_mib": {"rq worker": {"before": 100.0, "after": 101.5, "growth": 1.5}},
              "load": [{"phase": "mixed", "load_average_1min": 2.5}], "jobs": [{"status": "scheduled"}],
              "all_targets_met": False}
    text = format_report(report)
    assert "| mixed | health | 4 | 1200 | 3 | 1.5 | 60.2 | 40.0 | p99 < 50 ms, 0 errors | NO |" in text
    assert "| rq worker | 100.0 | 101.5 | +1.5 |" in text
    assert "refinement jobs: scheduled" in text and text.endswith("all targets met: NO")


def test_phases_share_the_duration_and_none_is_empty():
    assert phase_seconds(180) == [("health alone", 30), ("webhook alone", 30), ("mixed", 120)]
    assert all(seconds >= 1 for _, seconds in phase_seconds(2))


def test_lua_strings_escape_quotes_backslashes_and_every_non_ascii_byte():
    assert lua_string('a"b\\c') == '"a\\034b\\092c"'
    assert lua_string("£\n") == '"\\194\\163\\010"'
    assert lua_string("9") == '"9"'


def test_a_template_splits_into_literal_parts_around_its_slots():
    body = annotation_template(load_fixture("webhook-annotation-created.json"), DATA)
    parts, slots = split_template(body)
    assert len(parts) == len(slots) + 1
    assert ("text", 0, 0) in slots and ("label", 0, 0) in slots and slots.count(("id", 0, 0)) == 3
    assert "@@" not in "".join(parts)


def test_each_request_creates_a_new_annotation_of_a_data_set_item_with_its_gold_label():
    body = annotation_template(load_fixture("webhook-annotation-created.json"), DATA)
    event = json.loads(render(body, 1, 1000, 1, DATA))
    assert event["action"] == "ANNOTATION_CREATED"
    assert event["task"]["id"] == event["annotation"]["id"] == event["annotation"]["task"] == 1001
    assert event["task"]["data"]["text"] == "WIN £100"
    assert event["annotation"]["result"][0]["value"]["choices"] == ["spam"]
    assert event["project"]["label_config"] == DATA.label_config()
    assert event["project"]["parsed_label_config"]["label"]["labels"] == ["ham", "spam"]
    assert json.loads(render(body, 2, 1000, 1, DATA))["task"]["id"] == 1002


def test_an_update_relabels_the_previous_requests_annotation():
    body = annotation_template(load_fixture("webhook-annotation-updated.json"), DATA, -1, "relabel")
    event = json.loads(render(body, 2, 1000, 1, DATA))
    assert event["action"] == "ANNOTATION_UPDATED"
    assert event["annotation"]["id"] == 1001 and event["task"]["data"]["text"] == "WIN £100"
    assert event["annotation"]["result"][0]["value"]["choices"] == ["ham"]


def test_a_predict_batch_has_fresh_tasks_taking_the_data_set_in_turn():
    body = predict_template(load_fixture("predict-choices-single.json"), DATA, 3)
    request = json.loads(render(body, 1, 0, 3, DATA))
    assert [t["id"] for t in request["tasks"]] == [3, 4, 5]
    assert [t["data"]["text"] for t in request["tasks"]] == ["WIN £100", "hi", "WIN £100"]
    assert request["label_config"] == DATA.label_config()


def test_the_parent_pid_is_read_past_a_command_name_with_spaces_and_parentheses():
    assert parse_ppid("4242 (gunicorn: worker (x)) S 4200 4242 4242 0 -1") == 4200


def test_descendants_are_the_whole_subtree_and_nothing_else():
    parents = {10: 1, 11: 10, 12: 11, 13: 10, 20: 1, 21: 20}
    assert sorted(descendants(10, parents)) == [10, 11, 12, 13]
