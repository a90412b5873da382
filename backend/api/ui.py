"""GET /ui: one HTML page with what the backend has learnt, for an operator with a browser.

The JSON routes each answer one question about one project; this page puts every project side by
side: its ground truth, each version with the metrics it was published with and a learning curve,
the open label suspects, and the recent jobs. Server-rendered (ui_page.py), no script and nothing
fetched from elsewhere; every value is escaped. It is behind basic auth like every route but
/health and /webhook, and its links are relative so they work under the WEBHOOK_SECRET prefix too.
"""
from __future__ import annotations

import time
from urllib.parse import quote

from flask import Blueprint, Response, current_app, request

from ..errors import BadRequest
from ..labeling.label_config import parse_label_config
from ..store.ground_truth import GroundTruthStore, known_projects
from ..store.suspects import SuspectStore
from ..store.versions import report_key
from .openapi import QUERY, UiQuery, responses, spec
from .request import project_id, requested_projects
from .ui_page import learning_curve, metric_cells, render

bp = Blueprint("ui", __name__)

DEFAULT_JOBS, MAX_JOBS = 10, 50
MAX_PROJECTS = 50  # one page stays quick; the others are linked by id (`?project=ID`)


def _jobs_limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_JOBS
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 3 and int(raw) <= MAX_JOBS):
        raise BadRequest(f"`jobs` must be a whole number from 0 to {MAX_JOBS}, got {raw[:40]!r}", field="jobs")
    return int(raw)


def _served_lineage(registry, project: int, lineages: list[str], config: str | None) -> str | None:
    """The lineage /setup serves for the project's stored config, found without writing the
    alias that /setup writes when it adopts a legacy lineage."""
    if not config:
        return None
    try:
        task = parse_label_config(config)
    except BadRequest:
        return None
    own = registry.stored_lineage(project, task.config_hash)
    return task.legacy_hash if own not in lineages and task.legacy_hash in lineages else own


def _short(parent: str | None, label: str) -> str:
    """`v2` for a parent of the same lineage (the rest of its label is the row's own)."""
    if not parent:
        return ""
    head, _, number = parent.rpartition(".")
    return number if head and head == label.rpartition(".")[0] else parent


def _version_row(conn, project: int, version, current: int) -> dict:
    label = quote(version.label, safe="")
    has_report = conn.exists(report_key(project, version.label))
    return {
        "label": version.label, "current": version.number == current,
        "created": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(version.created_at)) if version.created_at else "",
        "parent": version.parent or "", "parent_short": _short(version.parent, version.label),
        "kind": version.kind, "gt_count": version.gt_count,
        "metrics": metric_cells(version.metrics),
        "json": f"versions/{label}?project={project}",
        "report": f"versions/{label}/report?project={project}" if has_report else None,
    }


def _default(registry, lineage: str) -> str:
    return f"{registry.label(lineage, 0)} (the default prompt)"


def _lineages(conn, registry, project: int, served: str | None) -> list[dict]:
    out = []
    for lineage in registry.lineages(project):
        stored = registry.history(project, lineage)[1:]  # v0 is the default prompt, never stored
        current = registry.current_number(project, lineage)
        out.append({"lineage": lineage[:6], "served": lineage == served,
                    "current": stored[current - 1].label if 0 < current <= len(stored) else _default(registry, lineage),
                    "versions": [_version_row(conn, project, v, current) for v in reversed(stored)],
                    "curve": learning_curve(stored)})
    return sorted(out, key=lambda lin: not lin["served"])


def _jobs(project: int, limit: int) -> list[dict]:
    if limit == 0:
        return []
    ext = current_app.extensions
    runs = [{**j, "kind": "refinement"} for j in ext["llmlb.scheduler"].runs(project, limit)]
    runs += [{**j, "kind": "pre-annotation"} for j in ext["llmlb.import_preannotation"].runs(project, limit)]
    return sorted(runs, key=lambda j: j.get("enqueued_at") or "", reverse=True)[:limit]


def _project(conn, registry, project: int, jobs: int, versioned: set[int]) -> dict:
    gt = GroundTruthStore(conn, project)
    lineages = registry.lineages(project) if project in versioned else []  # a SCAN: only where publish added one
    served = _served_lineage(registry, project, lineages, gt.label_config())
    ranking = SuspectStore(conn, project).open_rows(gt)
    shown = _lineages(conn, registry, project, served)
    if shown and (served is None or shown[0]["served"]):
        current = shown[0]["current"]  # the served lineage comes first
    else:
        current = _default(registry, served) if served else None
    return {
        "id": project, "gt_count": gt.count(), "config_known": served is not None, "current": current,
        "lineages": shown,
        "suspects": sum(len(entry.get("suspects", [])) for entry in ranking.get("controls", {}).values()),
        "suspects_ranked": bool(ranking), "suspects_by": ranking.get("model_version"),
        "suspects_by_short": _short(ranking.get("model_version"), current or ""),
        "jobs": _jobs(project, jobs),
    }


@bp.get("/ui")
@spec.validate(query=UiQuery, resp=responses(None, *QUERY), skip_validation=True)
def ui():
    """An HTML page of every project (or `?project=ID`): ground truth, versions with their metrics
    and learning curve, open label suspects, and the last `jobs` jobs (10; 0 to 50)."""
    wanted = project_id(request.args)
    jobs = _jobs_limit(request.args.get("jobs"))
    conn = current_app.extensions["llmlb.redis"]
    registry = current_app.extensions["llmlb.versions"]
    projects = [wanted] if wanted is not None else known_projects(conn)
    versioned = set(requested_projects({}, conn))
    page = render(projects=[_project(conn, registry, p, jobs, versioned) for p in projects[:MAX_PROJECTS]],
                  more=projects[MAX_PROJECTS:], filtered=wanted is not None,
                  engine=current_app.extensions["llmlb.engine_id"], now=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()))
    return Response(page, mimetype="text/html")
