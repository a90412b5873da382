"""The HTML of /ui (api/ui.py gathers what it shows): a Jinja template with inline CSS, and the
learning curve as inline SVG geometry computed here.

Everything goes through Jinja's autoescaping (flask.render_template_string escapes every value),
so a control name, a version label or a job's error from Redis is shown as text, never markup.
Nothing is fetched from elsewhere: the page works on a machine without internet and under a
strict Content-Security-Policy.
"""
from __future__ import annotations

import math

from flask import render_template_string

# The metric a version was chosen by, first that a control's metrics hold: multi-choice controls
# are selected by micro-F1, single-choice ones by macro-F1, <Labels> controls by exact span F1.
HEADLINE = (("micro_f1", "micro-F1"), ("macro_f1", "macro-F1"), ("exact_f1", "exact F1"))
SHOWN = (*HEADLINE, ("accuracy", "accuracy"), ("subset_accuracy", "subset accuracy"), ("ece", "ECE"),
         ("log_loss", "log-loss"))
COLORS = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#be185d", "#4d7c0f")
WIDTH, HEIGHT, LEFT, RIGHT, TOP, BOTTOM = 440, 200, 40, 26, 12, 42


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def metric_cells(metrics: dict) -> list[dict]:
    """Per control, the figures a reader compares versions by, formatted (others are in the JSON);
    for a template chosen without labels, the template and its mutual information."""
    return [{"control": control, "values": _template_cells(values.get("template"))
             or [(name, f"{values[k]:.3f}") for k, name in SHOWN if _number(values.get(k))]}
            for control, values in metrics.items() if isinstance(values, dict)]


def _template_cells(choice) -> list[tuple[str, str]]:
    if not isinstance(choice, dict) or not isinstance(choice.get("scores"), dict):
        return []
    score = choice["scores"].get(choice.get("template"))
    default = choice["scores"].get("default")
    cells = [("template", str(choice.get("template"))),
             (f"MI on {choice.get('unlabelled_texts')} unlabelled texts", f"{score:.3f}" if _number(score) else "?")]
    return cells + ([("built-in", f"{default:.3f}")] if _number(default) else [])


def _headline(values) -> tuple[str, float] | None:
    if isinstance(values, dict):
        for k, name in HEADLINE:
            if _number(values.get(k)):
                return name, float(values[k])
    return None


def learning_curve(versions: list) -> dict | None:
    """SVG geometry of each control's headline metric by version (oldest first), as measured on
    the ground truth of the job that published it; None when no version holds a metric."""
    series: dict[str, dict] = {}
    for i, version in enumerate(versions):
        for control, values in version.metrics.items():
            if (found := _headline(values)) is not None:
                entry = series.setdefault(control, {"control": control, "metric": found[0], "points": []})
                entry["points"].append((i, found[1], version))
    if not series:
        return None
    values = [v for s in series.values() for _, v, _ in s["points"]]
    lo, hi = max(0.0, math.floor((min(values) - 0.02) * 10) / 10), min(1.0, math.ceil((max(values) + 0.02) * 10) / 10)
    if hi - lo < 0.2:
        lo, hi = (max(0.0, hi - 0.2), hi) if hi - 0.2 >= 0 else (0.0, 0.2)
    step = 0.1 if hi - lo <= 0.5 else 0.2
    inner_w, inner_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(i: int) -> float:
        return round(LEFT + (inner_w / 2 if len(versions) == 1 else inner_w * i / (len(versions) - 1)), 1)

    def y(v: float) -> float:
        return round(TOP + inner_h * (hi - v) / (hi - lo), 1)

    ticks = [round(lo + k * step, 1) for k in range(int(round((hi - lo) / step)) + 1)]
    shown = list(series.values())[:len(COLORS)]
    for color, entry in zip(COLORS, shown):
        entry["color"] = color
        entry["dots"] = [{"x": x(i), "y": y(v), "title": f"{ver.label}: {entry['control']} {entry['metric']} {v:.3f}, "
                                                          f"{ver.gt_count} labelled tasks"} for i, v, ver in entry["points"]]
        entry["path"] = " ".join(f"{d['x']},{d['y']}" for d in entry["dots"])
        entry["summary"] = " → ".join(f"{v:.3f} at v{ver.number} ({ver.gt_count} GT)"
                                      for _, v, ver in (entry["points"][:1] + entry["points"][1:][-1:]))
    return {
        "width": WIDTH, "height": HEIGHT, "left": LEFT, "right": WIDTH - RIGHT, "top": TOP, "bottom": HEIGHT - BOTTOM,
        "yticks": [{"y": y(t), "label": f"{t:.1f}"} for t in ticks],
        "xticks": [{"x": x(i), "label": f"v{v.number}", "gt": f"{v.gt_count} GT" if v.gt_count else ""}
                   for i, v in enumerate(versions)],
        "series": shown, "hidden": len(series) - len(shown),
    }


def render(**context) -> str:
    return render_template_string(TEMPLATE, **context)


TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>LLM labeling backend: projects, versions and jobs</title>
<style>
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1240px;margin:1.2em auto;padding:0 1em;color:#1f2937;background:#fff}
h1{font-size:1.45em;margin:.2em 0}h2{font-size:1.2em;margin:0 0 .3em}h3{font-size:1em;margin:1em 0 .4em;color:#374151}
a{color:#1d4ed8}code{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.92em}
header p,.facts{color:#4b5563;margin:.2em 0 .6em}
section.project{border:1px solid #e5e7eb;border-radius:8px;padding:.9em 1.1em;margin:1.1em 0;box-shadow:0 1px 2px #0000000d}
table{border-collapse:collapse;width:100%;font-size:13px;margin:.2em 0}
th,td{border-bottom:1px solid #e5e7eb;padding:5px 8px;text-align:left;vertical-align:top}
th{background:#f9fafb;font-weight:600;color:#374151}
tr.current td{background:#eff6ff}
.badge{display:inline-block;border-radius:9px;padding:0 7px;font-size:12px;line-height:18px;background:#e5e7eb;color:#374151}
.badge.finished,.badge.published,.badge.done,.badge.cur{background:#dcfce7;color:#166534}
.badge.failed,.badge.canceled{background:#fee2e2;color:#991b1b}
.badge.started,.badge.refreshed{background:#dbeafe;color:#1e40af}
.badge.queued,.badge.scheduled,.badge.deferred{background:#fef3c7;color:#92400e}
.metric b{font-weight:600}.metric span{white-space:nowrap}.nowrap{white-space:nowrap}
figure{margin:.8em 0 0;display:flex;flex-wrap:wrap;gap:1.5em;align-items:center}
figcaption{font-size:13px;color:#4b5563;max-width:560px}figcaption p{margin:.3em 0}
.legend div{margin:.25em 0}.swatch{display:inline-block;width:14px;height:3px;vertical-align:middle;margin-right:6px}
.empty{border:1px dashed #cbd5e1;border-radius:8px;padding:1.4em;margin:1.5em 0;background:#f8fafc}
.muted{color:#6b7280}
</style></head>
<body>
<header>
<h1>LLM labeling backend</h1>
<p>{{ projects|length + more|length }} project{{ '' if projects|length + more|length == 1 else 's' }}{% if filtered %} (filtered: <a href="ui">all projects</a>){% endif %}
 · model <code>{{ engine }}</code> · {{ now }}
 · <a href="health">health</a> · <a href="openapi.json">API description</a></p>
</header>
{% if not projects %}
<div class="empty">
<h2>No project yet</h2>
<p>Nothing is stored here so far. Connect this backend to a Label Studio project (<i>Settings → Model →
Connect Model</i>) and annotate a few tasks: the project's ground truth, the versions it learns and its jobs
appear on this page.</p>
</div>
{% endif %}
{% for p in projects %}
<section class="project" id="project-{{ p.id }}">
<h2>Project {{ p.id }}</h2>
<p class="facts">Current version {% if p.current %}<code>{{ p.current }}</code>{% else %}<span class="muted">none yet</span>{% endif %}
 · ground truth: <b>{{ p.gt_count }}</b> labelled task{{ '' if p.gt_count == 1 else 's' }}
 · label suspects: {% if p.suspects_ranked %}<a href="projects/{{ p.id }}/suspects"><b>{{ p.suspects }}</b> open</a>{% if p.suspects_by %} <span class="muted">(ranked by <code title="{{ p.suspects_by }}">{{ p.suspects_by_short }}</code>)</span>{% endif %}{% else %}<span class="muted">not ranked yet</span>{% endif %}
 · <a href="versions?project={{ p.id }}">versions JSON</a> · <a href="jobs?project={{ p.id }}">jobs JSON</a>
 {% if not p.config_known %}<br><span class="muted">No label config stored yet: Label Studio sends it with its first annotation webhook.</span>{% endif %}</p>
{% if not p.lineages %}<p class="muted">No version learnt yet: the project serves the default prompt (v0) until a refinement job publishes one.</p>{% endif %}
{% for lin in p.lineages %}
{% if p.lineages|length > 1 %}<h3>Label config <code>{{ lin.lineage }}</code>{% if lin.served %} (the one served){% endif %}: current <code>{{ lin.current }}</code></h3>{% endif %}
<table class="versions">
<tr><th>Version</th><th>Created</th><th>Parent</th><th>Built by</th><th>Ground truth</th><th>Metrics (cross-validated when published)</th><th>Details</th></tr>
{% for v in lin.versions %}
<tr class="version{% if v.current %} current{% endif %}"><td class="nowrap"><code>{{ v.label }}</code>{% if v.current %} <span class="badge cur">current</span>{% endif %}</td>
<td class="nowrap">{{ v.created }}</td><td><code title="{{ v.parent }}">{{ v.parent_short }}</code></td><td><code>{{ v.kind }}</code></td><td>{{ v.gt_count }}</td>
<td>{% for m in v.metrics %}<div class="metric"><b>{{ m.control }}</b>{% for name, value in m["values"] %} · <span>{{ name }} {{ value }}</span>{% endfor %}</div>{% else %}<span class="muted">none stored</span>{% endfor %}</td>
<td><a href="{{ v.json }}">JSON</a>{% if v.report %} · <a href="{{ v.report }}">report</a>{% endif %}</td></tr>
{% endfor %}
</table>
{% if lin.curve %}{% set c = lin.curve %}
<figure class="curve">
<svg xmlns="http://www.w3.org/2000/svg" width="{{ c.width }}" height="{{ c.height }}" viewBox="0 0 {{ c.width }} {{ c.height }}" role="img" aria-label="learning curve of project {{ p.id }}">
<rect x="0" y="0" width="{{ c.width }}" height="{{ c.height }}" fill="#fff"/>
{% for t in c.yticks %}<line x1="{{ c.left }}" x2="{{ c.right }}" y1="{{ t.y }}" y2="{{ t.y }}" stroke="#e5e7eb"/><text x="{{ c.left - 6 }}" y="{{ t.y + 4 }}" text-anchor="end" font-size="11" fill="#6b7280">{{ t.label }}</text>{% endfor %}
<line x1="{{ c.left }}" x2="{{ c.left }}" y1="{{ c.top }}" y2="{{ c.bottom }}" stroke="#9ca3af"/>
<line x1="{{ c.left }}" x2="{{ c.right }}" y1="{{ c.bottom }}" y2="{{ c.bottom }}" stroke="#9ca3af"/>
{% for t in c.xticks %}<text x="{{ t.x }}" y="{{ c.bottom + 15 }}" text-anchor="middle" font-size="11" fill="#374151">{{ t.label }}</text><text x="{{ t.x }}" y="{{ c.bottom + 29 }}" text-anchor="middle" font-size="10" fill="#6b7280">{{ t.gt }}</text>{% endfor %}
{% for s in c.series %}<polyline class="series" points="{{ s.path }}" fill="none" stroke="{{ s.color }}" stroke-width="2"/>
{% for d in s.dots %}<circle cx="{{ d.x }}" cy="{{ d.y }}" r="4" fill="{{ s.color }}"><title>{{ d.title }}</title></circle>{% endfor %}{% endfor %}
</svg>
<figcaption><p><b>Learning curve</b>: each version's metric as the job that published it measured it
(cross-validated on the ground truth it had, GT).</p>
<div class="legend">{% for s in c.series %}<div><i class="swatch" style="background:{{ s.color }}"></i><b>{{ s.control }}</b> · {{ s.metric }} {{ s.summary }}</div>{% endfor %}{% if c.hidden %}<div class="muted">{{ c.hidden }} more controls: see the JSON</div>{% endif %}</div></figcaption>
</figure>
{% endif %}
{% endfor %}
<h3>Recent jobs</h3>
{% if p.jobs %}
<table class="jobs">
<tr><th>Job</th><th>Kind</th><th>Status</th><th>Result</th><th>Version</th><th>Reason</th><th>Enqueued</th><th>Took</th><th>Error</th></tr>
{% for j in p.jobs %}{% set r = j.result if j.result is mapping else {} %}
<tr class="job"><td><code title="{{ j.id }}">{{ (j.id or '')[:8] }}</code></td><td>{{ j.kind }}</td>
<td><span class="badge {{ j.status }}">{{ j.status }}</span></td>
<td>{% if r.status %}<span class="badge {{ r.status }}">{{ r.status }}</span>{% endif %}</td>
<td>{% if r.model_version %}<code>{{ r.model_version }}</code>{% endif %}</td>
<td>{{ j.reason or '' }}{% if j.replaced_by %} <span class="muted">(replaced by {{ j.replaced_by[:8] }})</span>{% endif %}</td>
<td class="nowrap">{{ (j.enqueued_at or '')[:19]|replace('T', ' ') }}</td><td>{% if j.seconds is defined and j.seconds is not none %}{{ j.seconds }} s{% endif %}</td>
<td>{{ (j.error or [])|join(' ') }}</td></tr>
{% endfor %}
</table>
{% else %}<p class="muted">No job kept for this project (jobs are listed for 7 days).</p>{% endif %}
</section>
{% endfor %}
{% if more %}<p class="muted">{{ more|length }} more project{{ '' if more|length == 1 else 's' }}:
{% for id in more %}<a href="ui?project={{ id }}">{{ id }}</a>{{ ',' if not loop.last }} {% endfor %}</p>{% endif %}
</body></html>
"""
