"""`interactive-bench`: the latency of Label Studio's interactive /predict (one task per request,
`params.context.result` as the editor sends it) on the real stack (gunicorn + RQ worker + embedded
Redis + the configured model, started as `serve` starts it, in a temporary MODEL_DIR), on one
single-label data set, in three modes compared in one run:

- batch: the task alone, no context (both choice controls scored);
- evidence: the data set's control answered with its gold label, the second control (Yes/No)
  scored with the annotator's choice as evidence (docs/how-it-works.md); then the same tasks with
  another label chosen (the next one in the data set's order), so that what the choice does to
  P(Yes) is read on the same texts;
- instruction: an instruction typed in the config's instruction <TextArea>, which answers every
  control anew; its accuracy and macro-F1 on the data set's control are set against the batch
  mode's on the same tasks.

Each mode's first request is reported apart (it computes the content-free calibration of a new
prompt), the others as warm p50/p95/max. Requests are sent one at a time, as one annotator does.
"""
from __future__ import annotations

import os
import secrets
import tempfile
import time
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np
import requests

from ..metrics.single_label import accuracy, macro_f1
from ..settings import Settings
from .datasets import Dataset

PROJECT = 1
LABEL_CONTROL = "label"  # the data set's labels, named as Dataset.label_config names them (--control)
OTHER_CONTROL = "recommend"  # the control the annotator's choice is evidence for
OTHER_LABELS = ("Yes", "No")
INSTRUCTION_AREA = "prompt"  # label_config.INSTRUCTION_AREA_NAMES
RESERVED_NAMES = ("text", OTHER_CONTROL, INSTRUCTION_AREA)  # the config's other tags: not for --control
TIMEOUT_S = 100  # Label Studio's timeout of an interactive /predict (docs/label-studio.md)
DEFAULT_DATASET = ("datasets", "sentence_polarity", "test.jsonl")  # under SHARED_DIR


class InteractiveBenchError(RuntimeError):
    """The benchmark cannot go on (the service did not start, or answered an error); the CLI prints it."""


def bench_config(labels: tuple[str, ...], control: str = LABEL_CONTROL) -> str:
    """The data set's single-choice control, a Yes/No one and an instruction <TextArea>, on one <Text>."""
    def choices(name: str, values) -> str:
        inner = "".join(f"<Choice value={quoteattr(v)}/>" for v in values)
        return f'<Choices name="{name}" toName="text" choice="single">{inner}</Choices>'

    return ('<View><Text name="text" value="$text"/>'
            f'<TextArea name="{INSTRUCTION_AREA}" toName="text" editable="true" rows="2"/>'
            f"{choices(control, labels)}{choices(OTHER_CONTROL, OTHER_LABELS)}</View>")


def choice_region(control: str, label: str) -> dict:
    """A choice the annotator set in the editor, as `params.context.result` carries it."""
    return {"id": "r1", "from_name": control, "to_name": "text", "type": "choices", "value": {"choices": [label]}}


def instruction_region(instruction: str) -> dict:
    """An instruction typed in the instruction <TextArea>, as the editor sends it."""
    return {"id": "p1", "from_name": INSTRUCTION_AREA, "to_name": "text", "type": "textarea",
            "value": {"text": [instruction]}}


def predict_body(task_id: int, text: str, config: str, context: list[dict] | None) -> dict:
    """One task, as Label Studio sends it: with `params.context` when interactive (the captured
    predict-interactive.json), without `params` for a batch."""
    body = {"tasks": [{"id": task_id, "data": {"text": text}}], "label_config": config,
            "project": f"{PROJECT}.1795402611"}
    if context is not None:
        body["params"] = {"login": None, "password": None, "context": {"result": context}}
    return body


def mode_plan(instructions: list[str], control: str = LABEL_CONTROL) -> list[dict]:
    """The modes in the order they run: what each sends, which controls its answer must hold, and
    whether the data set's control is scored (for accuracy)."""
    both = (control, OTHER_CONTROL)
    modes = [{"mode": "batch", "name": "batch form (no context)", "expect": both, "instruction": None},
             {"mode": "evidence", "name": f"interactive, {control} answered (gold) → {OTHER_CONTROL} scored",
              "expect": (OTHER_CONTROL,), "instruction": None, "choose": 0},
             {"mode": "evidence, other label", "name": f"interactive, {control} answered (another label) → "
              f"{OTHER_CONTROL} scored", "expect": (OTHER_CONTROL,), "instruction": None, "choose": 1}]
    for i, instruction in enumerate(instructions, 1):
        modes.append({"mode": f"instruction {i}", "name": f"interactive, typed instruction {i}", "expect": both,
                      "instruction": instruction})
    return [dict(mode, control=control) for mode in modes]


def chosen_label(mode: dict, gold: int, n_labels: int) -> int | None:
    """The label the annotator chose in this mode: the gold one, or the next one in label order."""
    return None if mode.get("choose") is None else (gold + mode["choose"]) % n_labels


def context_for(mode: dict, chosen: str | None) -> list[dict] | None:
    if mode["mode"] == "batch":
        return None
    if mode["instruction"] is None:
        return [choice_region(mode["control"], chosen)]
    return [instruction_region(mode["instruction"])]


def regions(answer: dict) -> dict[str, dict[str, float]]:
    """control → its probabilities, from a /predict answer for one task."""
    results = answer.get("results") or []
    if len(results) != 1:
        raise InteractiveBenchError(f"/predict answered {len(results)} results for one task: {str(answer)[:500]}")
    return {r.get("from_name"): r.get("probabilities") or {} for r in results[0].get("result", [])}


def latency(ms: list[float]) -> dict:
    """The first request apart, then p50/p95/max of the warm ones (the rest), in ms."""
    if not ms:
        return {"requests": 0}
    warm = np.array(ms[1:], dtype=float)
    row = {"requests": len(ms), "first_ms": round(ms[0], 1)}
    if warm.size:
        row.update(warm_p50_ms=round(float(np.percentile(warm, 50)), 1),
                   warm_p95_ms=round(float(np.percentile(warm, 95)), 1), warm_max_ms=round(float(warm.max()), 1))
    return row


def label_scores(gold: list[int], probs: list[dict[str, float]], labels: tuple[str, ...]) -> dict:
    """Accuracy and macro-F1 of the data set's control (argmax of its probabilities) against gold."""
    pred = np.array([int(np.argmax([p.get(label, 0.0) for label in labels])) for p in probs])
    g = np.array(gold)
    return {"accuracy": round(accuracy(g, pred), 4), "macro_f1": round(macro_f1(g, pred, len(labels)), 4)}


def evidence_effect(chosen: list[int], probs: list[dict[str, float]], labels: tuple[str, ...]) -> dict:
    """Mean P(Yes) of the second control per label the annotator chose: the evidence read."""
    yes = OTHER_LABELS[0]
    return {label: round(float(np.mean([p.get(yes, 0.0) for c, p in zip(chosen, probs) if c == k])), 4)
            for k, label in enumerate(labels) if any(c == k for c in chosen)}


def paired_effect(gold_chosen: list[dict[str, float]], other_chosen: list[dict[str, float]], gold: list[int],
                  labels: tuple[str, ...]) -> dict | None:
    """On the same tasks, with a two-label set: mean P(Yes) with each label chosen, and on how many
    tasks choosing the first label gave the higher P(Yes) (None with more labels: each task saw two
    of them only)."""
    if len(labels) != 2 or not gold:
        return None
    yes = OTHER_LABELS[0]
    by_label: list[tuple[float, float]] = []  # (P(Yes) with labels[0] chosen, with labels[1] chosen) per task
    for g, a, b in zip(gold, gold_chosen, other_chosen):
        pair = (a.get(yes, 0.0), b.get(yes, 0.0))
        by_label.append(pair if g == 0 else pair[::-1])
    first, second = np.array(by_label).T
    return {"tasks": len(gold), f"mean_p_yes_{labels[0]}_chosen": round(float(first.mean()), 4),
            f"mean_p_yes_{labels[1]}_chosen": round(float(second.mean()), 4),
            f"tasks_higher_with_{labels[0]}": int((first > second).sum())}


def measure_mode(url: str, auth: tuple[str, str], data: Dataset, config: str, mode: dict, n: int,
                 progress=lambda k: None) -> dict:
    """Send the first `n` tasks one request each in this mode; latency, and what the answers say."""
    ms, probs, unexpected = [], [], 0
    session = requests.Session()
    session.auth = auth
    for i in range(n):
        chosen = chosen_label(mode, data.gold[i], len(data.labels))
        body = predict_body(100_000 + i, data.texts[i], config,
                            context_for(mode, None if chosen is None else data.labels[chosen]))
        t0 = time.perf_counter()
        try:
            r = session.post(url + "/predict", json=body, timeout=TIMEOUT_S)
        except requests.RequestException as exc:
            raise InteractiveBenchError(f"{mode['mode']}: /predict failed on task {i}: {exc}") from exc
        ms.append((time.perf_counter() - t0) * 1000)
        if not r.ok:
            raise InteractiveBenchError(f"{mode['mode']}: /predict answered {r.status_code} on task {i}: "
                                        f"{r.text[:500]}")
        try:
            got = regions(r.json())
        except ValueError as exc:
            raise InteractiveBenchError(f"{mode['mode']}: /predict answered no JSON on task {i}: {r.text[:200]}") \
                from exc
        unexpected += set(got) != set(mode["expect"])
        probs.append(got)
        progress(1)
    row = {"mode": mode["mode"], "name": mode["name"], **latency(ms), "unexpected_answers": unexpected,
           "probs": probs}
    if mode["instruction"] is not None:
        row["instruction"] = mode["instruction"]
    gold = list(data.gold[:n])
    if mode["control"] in mode["expect"]:
        row.update(label_scores(gold, [p.get(mode["control"], {}) for p in probs], data.labels))
    else:
        chosen = [chosen_label(mode, g, len(data.labels)) for g in gold]
        row["mean_p_yes_by_chosen_label"] = evidence_effect(chosen, [p.get(OTHER_CONTROL, {}) for p in probs],
                                                             data.labels)
    return row


def run(settings: Settings, data: Dataset, n: int, instructions: list[str], control: str = LABEL_CONTROL,
        log=print, progress=lambda k: None) -> dict:
    """Start the stack in a temporary MODEL_DIR, then measure each mode on the first `n` tasks."""
    from ..supervisor import exit_on_sigterm
    from .load_bench import LoadBenchError, _service

    exit_on_sigterm()
    n = min(n, len(data.texts))
    config = bench_config(data.labels, control)
    auth, secret = ("interactive-bench", secrets.token_urlsafe(24)), secrets.token_urlsafe(24)
    load = {"start": round(os.getloadavg()[0], 2)}
    rows = []
    t0 = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="llmlb-interactive-") as tmp, \
                _service(settings, Path(tmp), auth, secret) as stack:
            log(f"service ready after {time.monotonic() - t0:.0f} s; {n} tasks per mode")
            for mode in mode_plan(instructions, control):
                rows.append(measure_mode(stack.url, auth, data, config, mode, n, progress))
                log(f"{mode['mode']}: done")
    except LoadBenchError as exc:
        raise InteractiveBenchError(str(exc)) from exc
    load["end"] = round(os.getloadavg()[0], 2)
    probs = {row["mode"]: row.pop("probs") for row in rows}
    paired = paired_effect([p.get(OTHER_CONTROL, {}) for p in probs["evidence"]],
                           [p.get(OTHER_CONTROL, {}) for p in probs["evidence, other label"]],
                           list(data.gold[:n]), data.labels)
    return {"date": time.strftime("%Y-%m-%d"), "dataset": data.name, "tasks": n, "labels": list(data.labels),
            "control": control, "config": config, "cpus": os.cpu_count(), "llm_n_threads": settings.llm_n_threads,
            "load_average_1min": load, "modes": rows, "evidence_same_tasks": paired}


def _cell(row: dict, key: str) -> str:
    value = row.get(key)
    return "-" if value is None else f"{value:.0f}" if key.endswith("_ms") else f"{value:.3f}"


def format_report(report: dict) -> str:
    """Markdown: one latency row per mode, then accuracy against the batch mode, then the facts a
    reader needs to trust the figures (load average, threads)."""
    lines = [f"{report['dataset']}, first {report['tasks']} tasks, one task per request",
             "", "| mode | first ms | warm p50 ms | warm p95 ms | warm max ms | unexpected answers |",
             "|---|---|---|---|---|---|"]
    for row in report["modes"]:
        cells = [_cell(row, k) for k in ("first_ms", "warm_p50_ms", "warm_p95_ms", "warm_max_ms")]
        lines.append(f"| {row['name']} | " + " | ".join(cells) + f" | {row['unexpected_answers']} |")
    scored = [r for r in report["modes"] if "accuracy" in r]
    batch = next((r for r in scored if r["mode"] == "batch"), None)
    control = report.get("control", LABEL_CONTROL)
    lines += ["", f"| {control} control vs gold | accuracy | macro-F1 | Δ macro-F1 vs batch |", "|---|---|---|---|"]
    for row in scored:
        what = f"typed: {row['instruction']!r}" if "instruction" in row else "batch form"
        delta = "" if batch is None or row is batch else f"{row['macro_f1'] - batch['macro_f1']:+.3f}"
        lines.append(f"| {what} | {row['accuracy']:.3f} | {row['macro_f1']:.3f} | {delta} |")
    if len(scored) == 1:
        lines.append("(no --instruction: the typed-instruction mode was not run)")
    paired, yes = report.get("evidence_same_tasks"), OTHER_LABELS[0]
    if paired:
        first, second = (key.removeprefix("mean_p_yes_").removesuffix("_chosen")
                         for key in paired if key.startswith("mean_p_yes_"))
        lines.append(f"\nevidence, the same {paired['tasks']} tasks with each {control} chosen: mean "
                     f"P({yes}) of {OTHER_CONTROL} {paired[f'mean_p_yes_{first}_chosen']:.3f} with {first}, "
                     f"{paired[f'mean_p_yes_{second}_chosen']:.3f} with {second}; higher with {first} on "
                     f"{paired[f'tasks_higher_with_{first}']} of {paired['tasks']} tasks")
    else:
        for row in report["modes"]:
            if "mean_p_yes_by_chosen_label" in row:
                effect = ", ".join(f"{k} {v:.3f}" for k, v in row["mean_p_yes_by_chosen_label"].items())
                lines.append(f"\n{row['mode']}: mean P({yes}) of {OTHER_CONTROL} by the {control} chosen: "
                             f"{effect}")
    load = report["load_average_1min"]
    lines.append(f"{report['cpus']} CPUs, LLM_N_THREADS={report['llm_n_threads']}, load average (1 min) "
                 f"{load['start']} at start, {load['end']} at end")
    return "\n".join(lines)
