"""schemathesis against a real gunicorn: requests generated from /openapi.json (valid and invalid),
every response checked against the same description. No 5xx, no undocumented status or body.

Two of schemathesis' checks are left out on purpose. `positive_data_acceptance`: the description
gives shapes, while the routes also check meaning (a label config that parses, a project id in
range) and answer a named 400. `negative_data_rejection`: unknown fields and events are accepted
and ignored, because Label Studio adds both between releases."""
import json
import subprocess
import sys
from collections import Counter

import pytest
import requests

pytestmark = [pytest.mark.service, pytest.mark.model]

AUTH = ("fuzz-user", "fuzz-pass-0123456789")
MIN_REQUESTS = 1000


@pytest.fixture(scope="module")
def server(server_factory, redis_url):
    # no refinement job is due while fuzzing: the webhook's work ends at the ground-truth store
    return server_factory({"BASIC_AUTH_USER": AUTH[0], "BASIC_AUTH_PASS": AUTH[1], "REFINE_DELAY": "3600",
                           "REDIS_URL": redis_url})


def test_openapi_describes_every_route(server):
    spec = requests.get(server.url + "/openapi.json", auth=AUTH, timeout=5).json()
    assert spec["openapi"].startswith("3.")
    operations = {(method.upper(), path) for path, item in spec["paths"].items() for method in item}
    assert operations == {
        ("GET", "/"), ("GET", "/health"), ("POST", "/setup"), ("POST", "/predict"), ("GET", "/versions"),
        ("GET", "/versions/{label}/report"), ("GET", "/metrics"), ("POST", "/webhook"), ("POST", "/train"),
        ("GET", "/jobs"), ("GET", "/projects/{project}/suspects"), ("GET", "/versions/{label}"),
        ("GET", "/ui"),
    }
    assert spec["paths"]["/webhook"]["post"]["security"] == []  # Label Studio sends no credentials
    assert "security" not in spec["paths"]["/predict"]["post"] or spec["paths"]["/predict"]["post"]["security"]


def test_generated_requests_get_no_server_error_and_match_the_spec(server, tmp_path):
    har = tmp_path / "fuzz.har"
    cmd = [
        sys.executable, "-m", "schemathesis.cli", "run", server.url + "/openapi.json",
        "--auth", ":".join(AUTH), "--checks", "all", "--exclude-checks", "positive_data_acceptance,negative_data_rejection",
        "--mode", "all", "--max-examples", "40", "--seed", "20261202", "--phases", "examples,coverage,fuzzing",
        "--generation-database", "none", "--request-timeout", "100", "--max-response-time", "100", "--max-time", "25",
        "--report", "har", "--report-har-path", str(har), "--no-color", "--workers", "1",
    ]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)  # its cache stays there
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    entries = json.loads(har.read_text())["log"]["entries"]
    statuses = Counter(entry["response"]["status"] for entry in entries)
    assert len(entries) >= MIN_REQUESTS, (len(entries), statuses)
    assert not [code for code in statuses if code >= 500 or code == 0], statuses  # 0: no response
    routes = {entry["request"]["url"].split("?")[0].removeprefix(server.url) for entry in entries}
    assert {"/setup", "/predict", "/webhook", "/train", "/jobs", "/versions"} <= routes
