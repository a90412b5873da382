"""Evaluation results → metrics.json and a self-contained HTML report (plots embedded as PNG).

Per system: per-label precision/recall/F1, confusion matrix, reliability diagram with ECE, score
histogram, and accuracy at each coverage level (what annotators get if they only check tasks whose
score is below a threshold and accept the rest). Simulations add the learning curve per round.
A multi-label system (`multilabel_system_metrics`) has micro/macro-F1 and subset accuracy instead
of accuracy, its reliability diagram over every (item, label) P(yes), and no confusion matrix.
"""
from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np

from .single_label import accuracy, ece_noise_floor, expected_calibration_error, macro_f1


def per_label(gold: np.ndarray, pred: np.ndarray, labels: list[str]) -> list[dict]:
    rows = []
    for k, label in enumerate(labels):
        tp = int(((pred == k) & (gold == k)).sum())
        fp = int(((pred == k) & (gold != k)).sum())
        fn = int(((pred != k) & (gold == k)).sum())
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        f = 2 * p * r / (p + r) if p + r else 0.0
        rows.append({"label": label, "precision": round(p, 4), "recall": round(r, 4), "f1": round(f, 4),
                     "support": int((gold == k).sum())})
    return rows


def confusion(gold: np.ndarray, pred: np.ndarray, n: int) -> list[list[int]]:
    m = np.zeros((n, n), dtype=int)
    valid = pred >= 0
    np.add.at(m, (gold[valid], pred[valid]), 1)
    return m.tolist()


def reliability(gold: np.ndarray, probs: np.ndarray, n_bins: int = 10) -> list[dict]:
    conf, correct = probs.max(1), probs.argmax(1) == gold
    edges = np.linspace(0, 1, n_bins + 1)
    bins = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    return [{"lo": round(edges[b], 2), "hi": round(edges[b + 1], 2), "count": int((bins == b).sum()),
             "confidence": round(float(conf[bins == b].mean()), 4) if (bins == b).any() else None,
             "accuracy": round(float(correct[bins == b].mean()), 4) if (bins == b).any() else None}
            for b in range(n_bins)]


def coverage_curve(gold: np.ndarray, probs: np.ndarray) -> list[dict]:
    """Accuracy of the accepted predictions when only those with score ≥ t are accepted."""
    conf, correct = probs.max(1), probs.argmax(1) == gold
    order = np.argsort(-conf)
    out = []
    for coverage in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0):
        k = max(1, int(round(coverage * len(gold))))
        out.append({"coverage": coverage, "threshold": round(float(conf[order][k - 1]), 4),
                    "accuracy": round(float(correct[order][:k].mean()), 4)})
    return out


def system_metrics(name: str, gold, labels: list[str], probs=None, pred=None, extra: dict | None = None) -> dict:
    """Metrics of one system; `probs` (n × labels) when it has scores, else hard `pred` (−1 = no answer)."""
    gold = np.asarray(gold)
    if probs is not None:
        probs = np.asarray(probs, dtype=np.float64)
        pred = probs.argmax(1)
    pred = np.asarray(pred)
    out = {
        "name": name, "n": int(len(gold)),
        "accuracy": round(accuracy(gold, pred), 4),
        "macro_f1": round(macro_f1(gold, pred, len(labels)), 4),
        "per_label": per_label(gold, pred, labels),
        "confusion": confusion(gold, pred, len(labels)),
        **(extra or {}),
    }
    if probs is not None:
        out.update(ece=round(expected_calibration_error(gold, probs), 4), ece_floor=round(ece_noise_floor(probs), 4),
                   reliability=reliability(gold, probs),
                   coverage=coverage_curve(gold, probs),
                   score_histogram=np.histogram(probs.max(1), bins=10, range=(0, 1))[0].tolist())
    return out


def multilabel_system_metrics(name: str, gold, labels: list[str], probs, extra: dict | None = None,
                              threshold: float | np.ndarray | None = None) -> dict:
    """Metrics of one multi-label system: `gold` items × labels 0/1, `probs` P(yes) per cell,
    `threshold` its decision threshold (one, or one per item) or 0.5. Coverage uses the
    prediction score P(exactly the served set) and exact-match correctness."""
    from . import multi_label as ml

    gold, probs = np.asarray(gold), np.asarray(probs, dtype=np.float64)
    pred = ml.predicted_sets(probs, threshold)
    scores, exact = ml.set_scores(probs, threshold), (pred == gold.astype(bool)).all(axis=1)
    order = np.argsort(-scores)
    coverage = []
    for share in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0):
        k = max(1, int(round(share * len(gold))))
        coverage.append({"coverage": share, "threshold": round(float(scores[order][k - 1]), 4),
                         "accuracy": round(float(exact[order][:k].mean()), 4)})
    return {
        "name": name, "n": int(len(gold)), "multi_label": True,
        **ml.summarize_multilabel(gold, probs, threshold),
        "per_label": ml.per_label(gold, pred, labels),
        "reliability": ml.yes_no_reliability(gold, probs),
        "coverage": coverage,
        "score_histogram": np.histogram(scores, bins=10, range=(0, 1))[0].tolist(),
        **(extra or {}),
    }


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _plots(system: dict, labels: list[str]) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = []
    if "confusion" in system:
        fig, ax = plt.subplots(figsize=(4, 3.4))
        m = np.array(system["confusion"])
        ax.imshow(m, cmap="Blues")
        if len(labels) <= 12:
            ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
            ax.set_yticks(range(len(labels)), labels)
            for (i, j), v in np.ndenumerate(m):
                ax.text(j, i, str(v), ha="center", va="center", fontsize=8,
                        color="white" if v > m.max() / 2 else "black")
        ax.set_xlabel("predicted")
        ax.set_ylabel("gold")
        ax.set_title("Confusion matrix")
        out.append(("confusion", _png(fig)))
    if "reliability" in system:
        multi = system.get("multi_label", False)
        fig, ax = plt.subplots(figsize=(4, 3.4))
        pts = [b for b in system["reliability"] if b["count"]]
        ax.plot([0, 1], [0, 1], "--", color="grey", lw=1)
        ax.bar([(b["lo"] + b["hi"]) / 2 for b in pts], [b["accuracy"] for b in pts], width=0.09, alpha=0.7)
        ax.plot([b["confidence"] for b in pts], [b["accuracy"] for b in pts], "o-", color="C1")
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="P(label applies), all item × label" if multi else "confidence (score)",
               ylabel="share that applies" if multi else "accuracy", title=f"Reliability, ECE = {system['ece']:.3f}")
        out.append(("reliability", _png(fig)))
        fig, ax = plt.subplots(figsize=(4, 3.4))
        ax.bar(np.arange(10) / 10 + 0.05, system["score_histogram"], width=0.09)
        ax.set(xlim=(0, 1), xlabel="score", ylabel="tasks", title="Score histogram")
        out.append(("histogram", _png(fig)))
        fig, ax = plt.subplots(figsize=(4, 3.4))
        cov = system["coverage"]
        ax.plot([c["coverage"] for c in cov], [c["accuracy"] for c in cov], "o-")
        ax.set(xlim=(0, 1.02), ylim=(0, 1.02), xlabel="share of tasks accepted (highest scores first)",
               ylabel="exact-set accuracy of accepted" if multi else "accuracy of accepted", title="Accuracy at coverage")
        out.append(("coverage", _png(fig)))
    return out


def _learning_curve(rounds: list[dict], baselines: dict[str, float]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    xs = [r["labels"] for r in rounds]
    ax.plot(xs, [r["macro_f1"] for r in rounds], "o-", label="refined (served version)")
    if rounds and "head_only_macro_f1" in rounds[0]:
        ax.plot(xs, [r["head_only_macro_f1"] for r in rounds], "s--", label="embedding + LR on the same labels")
    if rounds and "v0_head_ensemble_macro_f1" in rounds[0]:
        ax.plot(xs, [r["v0_head_ensemble_macro_f1"] for r in rounds], "^-.", color="C6", label="version 0 + head ensemble")
    for i, (name, value) in enumerate(baselines.items()):
        ax.axhline(value, ls=":", color=f"C{i + 2}", label=name)
    ax.set(xlabel="ground-truth labels", ylabel="macro-F1 on test", title="Learning curve")
    ax.legend(fontsize=8)
    return _png(fig)


def _table(rows: list[dict], columns: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(r.get(c, '')))}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


SUMMARY_COLUMNS = ["name", "n", "accuracy", "macro_f1", "ece", "ece_floor"]
SUMMARY_COLUMNS_MULTI = ["name", "n", "micro_f1", "macro_f1", "subset_accuracy", "ece", "log_loss"]
SUMMARY_COLUMNS_SPANS = ["name", "n", "exact_f1", "partial_f1", "unlabelled_f1", "predicted", "gold"]
SUSPECT_COLUMNS = ["control", "task_id", "annotation_id", "given", "suggested", "p_given", "p_suggested", "confident"]
SUSPECTS_SHOWN = 20  # per control; the rest at /projects/<id>/suspects


def write_report(out_dir: str | Path, *, title: str, labels: list[str], systems: list[dict],
                 rounds: list[dict] | None = None, meta: dict | None = None,
                 suspects: dict[str, dict] | None = None) -> Path:
    """Write metrics.json and report.html into `out_dir`; returns the HTML path. `suspects`: the
    job's label-error ranking per control (refinement/job.py), whose top rows are listed."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = {"title": title, "labels": labels, "meta": meta or {}, "systems": systems, "rounds": rounds or []}
    (out / "metrics.json").write_text(json.dumps(data, indent=2), encoding="utf-8")
    parts = [f"<h1>{html.escape(title)}</h1>",
             f"<pre>{html.escape(json.dumps(meta or {}, indent=1))}</pre>",
             "<h2>Summary</h2>"]
    choices = [s for s in systems if not s.get("spans")]
    if choices:
        parts.append(_table(choices, SUMMARY_COLUMNS_MULTI if any(s.get("multi_label") for s in choices) else SUMMARY_COLUMNS))
    if len(choices) < len(systems):  # <Labels> controls: span-level figures, texts as `n`
        parts.append(_table([s for s in systems if s.get("spans")], SUMMARY_COLUMNS_SPANS))
    if rounds:
        baselines = {s["name"]: s["macro_f1"] for s in systems if s["name"] in ("naive free text", "version 0")}
        parts += ["<h2>Learning curve</h2>", f'<img src="data:image/png;base64,{_learning_curve(rounds, baselines)}">',
                  _table(rounds, [k for k in rounds[0] if not isinstance(rounds[0][k], (list, dict))])]
    if suspects:
        rows = [{**row, "control": name, "given": ", ".join(row["given"]), "suggested": ", ".join(row["suggested"])}
                for name, entry in suspects.items() for row in entry["suspects"][:SUSPECTS_SHOWN]]
        counts = "; ".join(f"{name}: {len(e['suspects'])} of {e['items']} items, from {e['from']}"
                           for name, e in suspects.items())
        parts += ["<h2>Human labels to review</h2>",
                  f"<p>Most likely wrong first (confident learning on out-of-fold probabilities). {html.escape(counts)}.</p>",
                  _table(rows, SUSPECT_COLUMNS)]
    for system in systems:
        parts.append(f"<h2>{html.escape(system['name'])}</h2>")
        parts.append(_table(system["per_label"], ["label", "precision", "recall", "f1", "support"]))
        parts.append("".join(f'<img alt="{k}" src="data:image/png;base64,{v}">' for k, v in _plots(system, labels)))
    style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccc;padding:3px 8px;"
             "font-size:13px;text-align:right}th{background:#f3f3f3}img{margin:4px}")
    page = f"<!doctype html><meta charset=utf-8><title>{html.escape(title)}</title><style>{style}</style>{''.join(parts)}"
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def save_probabilities(path: Path, data, version_0: np.ndarray, rounds: dict[int, np.ndarray]) -> None:
    """Every test item's served probabilities (label order of `labels`, items in file order) beside
    the gold labels, for analyses the summary cannot answer (say, ECE on a subset of the items)."""
    np.savez_compressed(path, labels=np.array(data.labels), gold=np.array(data.gold),
                        version_0=version_0, **{f"after_{n}_labels": p for n, p in rounds.items()})
