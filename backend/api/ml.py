"""The routes Label Studio's ML connector calls: /health, /setup, /predict, /versions, /metrics.

/health and /setup never wait for the model (Label Studio gives them 1 s and 3 s); /predict waits
for a loading model up to LLM_LOAD_TIMEOUT and then answers 503, never an empty `results`.
"""
from __future__ import annotations

import time

import redis
from flask import Blueprint, Response, current_app, jsonify, request

from ..errors import BadRequest, EngineError, NotFound, PayloadTooLarge
from ..labeling.label_config import parse_label_config
from ..labeling.service import extract_texts
from ..labelstudio.payloads import MAX_ID, editor_context
from ..store.instruction_effects import InstructedAnswers
from ..store.predicted_logits import PredictedLogits
from ..store.proposals import ProposalMemory
from .interactive import offer_once
from ..store.versions import report_key
from .openapi import JSON_BODY, PUBLIC, QUERY, Health, PredictRequest, PredictResponse, ProjectQuery, SetupRequest
from .openapi import Responses, SetupResponse, VersionsResponse, responses, spec
from .prometheus import usage_counters
from .version_detail import report_link
from .request import json_object, project_id, requested_projects, required_string

bp = Blueprint("ml", __name__)


def _ext(name: str):
    return current_app.extensions[f"llmlb.{name}"]


@bp.get("/")
@bp.get("/health")
@spec.validate(resp=Responses(HTTP_200=Health, HTTP_503=Health), security=PUBLIC, skip_validation=True)
def health():
    """UP (200) when predictions can be served; DOWN (503) with the reason when the model failed
    to load or Redis cannot be reached. A remote LLM server's last failure is shown either way."""
    body, status = _ext("health").report()
    return jsonify(body), status


@bp.post("/setup")
@spec.validate(json=SetupRequest, resp=responses(SetupResponse, *JSON_BODY), skip_validation=True)
def setup():
    """Label Studio connects a project: the current model version for its label config."""
    body = json_object()
    project = project_id(body)
    label_task = parse_label_config(required_string(body, "schema"))
    version = _ext("versions").current(project, label_task.config_hash, label_task.legacy_hash)
    return jsonify(
        model_version=version.label,
        controls=[c.name for c in (*label_task.controls, *label_task.span_controls)],
        skipped=label_task.skipped_messages(),
    )


@bp.post("/predict")
@spec.validate(json=PredictRequest, resp=responses(PredictResponse, *JSON_BODY, 502, 503, 504), skip_validation=True)
def predict():
    """Predictions for a batch of tasks: labels of the config only, each with its probability."""
    settings = _ext("settings")
    body = json_object()
    project = project_id(body)
    label_task = parse_label_config(required_string(body, "label_config"))
    tasks = body.get("tasks")
    if isinstance(tasks, list) and len(tasks) > settings.max_tasks_per_request:
        raise PayloadTooLarge(
            f"{len(tasks)} tasks in one request; the limit is MAX_TASKS_PER_REQUEST={settings.max_tasks_per_request}",
            field="tasks",
        )
    items = extract_texts(tasks, label_task, settings.max_text_chars)
    context = editor_context(label_task, body)
    version = _ext("versions").current(project, label_task.config_hash, label_task.legacy_hash)
    t0 = time.monotonic()
    service = _ext("labeling")()
    # what the version scores here, its next job need not score again (Label Studio predicts a task
    # when an annotator opens it, before the annotation arrives)
    keep = None if project is None else PredictedLogits(_ext("redis"), project, version.label, _ext("engine_id"))
    try:
        if context is not None:  # interactive: one task, answered around what the annotator set
            results = service.predict(items, label_task, version, context=context, keep=keep)
            if project is not None:
                memory = ProposalMemory(_ext("redis"))
                results = [offer_once(memory, project, tasks, context, r) for r in results]
                _remember_instructed(project, tasks, label_task, context, results)
        else:
            results = predict_within(service, items, label_task, version, settings.predict_batch_seconds, keep)
            if project is not None:
                _sample_texts(project, body["label_config"], label_task, items, version)
    except EngineError as exc:  # shown by /health until a prediction succeeds again
        _ext("llm_status").failed(exc.message)
        raise
    _ext("llm_status").succeeded()
    _ext("metrics").observe_predict(len(results), time.monotonic() - t0)
    return jsonify(results=results, model_version=version.label)


def _remember_instructed(project: int, tasks: list, label_task, context, results: list[dict]) -> None:
    """What a typed instruction made the model answer on this task (labels and probability per
    choice control), kept for the annotation's webhook to store with the ground truth as the
    instruction's effect. The answer is sent by now: a Redis failure costs the effect, not it."""
    task = tasks[0].get("id") if len(tasks) == 1 and isinstance(tasks[0], dict) else None
    if (not context.instruction or not results or isinstance(task, bool) or not isinstance(task, int)
            or not 1 <= task <= MAX_ID):
        return
    regions = results[0]["result"]
    # read back as an annotation's result is (labelstudio/payloads.py), so that the webhook
    # compares like with like: a star as "4", a taxonomy path as its label
    chosen = editor_context(label_task, {"params": {"context": {"result": regions}}}).choices
    scores = {r["from_name"]: r.get("score") for r in regions if r.get("from_name") in chosen}
    answers = {name: {"answer": list(labels), "probability": float(scores[name])}
               for name, labels in chosen.items() if isinstance(scores.get(name), (int, float))}
    try:
        InstructedAnswers(_ext("redis")).remember(project, task, context.instruction, answers)
    except redis.RedisError as exc:
        current_app.logger.warning("project %s task %s: the instructed answer was not kept (%s)", project, task, exc)


def _sample_texts(project: int, label_config: str, label_task, items: list, version) -> None:
    """The tasks' texts into the project's unlabelled sample (template choice); the predictions
    are made by now, so a Redis failure here costs the sample, not the answer."""
    texts = {f: [item.texts[f] for item in items] for f in label_task.fields}
    try:
        _ext("events").tasks_seen(project, label_config, label_task, texts, version)
    except redis.RedisError as exc:
        current_app.logger.warning("project %s: the unlabelled sample was not updated (%s)", project, exc)


def predict_within(service, items: list, label_task, version, budget_s: float, keep=None) -> list[dict]:
    """Every task's prediction, or only the first one's when the whole batch would outlast `budget_s`.

    Label Studio waits 100 s for a batch and, on a timeout, stores nothing while telling the user
    "Retrieved N predictions". Given exactly one result for many tasks, it asks again one task per
    request instead, each well inside its timeout. The pace is taken from the second task: the
    first also pays for a new prompt's cached prefix and content-free calibration. `keep`
    receives the logits scored (store/predicted_logits.py)."""
    if len(items) <= 2 or budget_s <= 0:
        return service.predict(items, label_task, version, keep=keep)
    t0 = time.monotonic()
    first = service.predict(items[:1], label_task, version, keep=keep)
    t1 = time.monotonic()
    second = service.predict(items[1:2], label_task, version, keep=keep)
    t2 = time.monotonic()
    parallel = max(1, service.engine.capabilities.parallel_requests)
    if (t2 - t0) + (t2 - t1) * (len(items) - 2) / parallel > budget_s:
        current_app.logger.warning(
            "/predict: %d tasks at %.1f s each would outlast PREDICT_BATCH_SECONDS=%g; answering the first "
            "task only, so that Label Studio asks for the others one by one", len(items), t2 - t1, budget_s)
        return first
    return first + second + service.predict(items[2:], label_task, version, keep=keep)


@bp.get("/versions")
@spec.validate(query=ProjectQuery, resp=responses(VersionsResponse, *QUERY), skip_validation=True)
def versions():
    """Label Studio calls this without a project (it shows the list); `?project=ID` gives details."""
    registry, conn = _ext("versions"), _ext("redis")
    projects = requested_projects(request.args, conn)
    details = []
    for project in projects:
        for lineage in registry.lineages(project):
            current = registry.current_number(project, lineage)
            for v in registry.history(project, lineage):
                report = report_link(conn, project, v.label) if v.number else None
                details.append({**v.to_dict(), "project": project, "current": v.number == current,
                                **({"report": report} if report else {})})
    labels = [d["model_version"] for d in details] or [f"{_ext('engine_id')}.v0"]
    return jsonify(versions=labels, details=details)


@bp.get("/versions/<label>/report")
@spec.validate(query=ProjectQuery, resp=responses(None, *QUERY, 404), skip_validation=True)
def version_report(label: str):
    """The HTML report of the held-out evaluation that made `label` a version (`?project=ID` when
    several projects have a version of that name)."""
    conn = _ext("redis")
    projects = requested_projects(request.args, conn)
    found = [(p, conn.get(report_key(p, label))) for p in projects]
    found = [(p, page) for p, page in found if page]
    if not found:
        raise NotFound(f"no report for version {label!r}", field="label")
    if len(found) > 1:
        raise BadRequest(f"several projects have a version {label!r}: add ?project= one of "
                         f"{[p for p, _ in found]}", field="project")
    return Response(found[0][1], mimetype="text/html")


@bp.get("/metrics")
@spec.validate(resp=responses(None, 401), skip_validation=True)
def metrics():
    """Prometheus text format."""
    loader = _ext("engine_loader")
    gauges = {
        "llmlb_engine_ready": 1 if loader.state == "ready" else 0,
        "llmlb_engine_load_seconds": round(loader.load_seconds or 0.0, 3),
    }
    counters = usage_counters(loader.engine)
    return Response(_ext("metrics").render(gauges, counters), mimetype="text/plain; version=0.0.4")
