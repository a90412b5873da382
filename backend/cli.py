"""`llm-labeling …` (or `python -m backend …`): serve, worker, prepare, predict, refine, preannotate, versions
and suspects here; the measuring commands (eval, bench, injection, span-bench, head-bench, load-bench,
candidates, suspects-bench, template-bench, interactive-bench) in commands/benches.py.

Exit codes (docs/operations.md, "Command line"): 0 done; 1 it ran and something failed (Redis or Label
Studio unreachable or refusing, the LLM failing, tasks that could not be pre-annotated); 2 it could not
run as given (an option, a setting, an input file, or a version or control the store does not have).
Every expected failure is one line, `Error: …`, on stderr; a traceback means a bug."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .commands import benches
from .commands.common import (ALREADY_JSON, Failure, Group, InputError, json_option, jsonl_rows, labeling_service,
                              load_settings, print_json, progress_bar, redis_connection)
from .errors import ConfigurationError
from .settings import Settings


@click.group(cls=Group)
def main() -> None:
    """LLM labeling backend for Label Studio.

    Exit codes: 0 done; 1 a failure at run time (Redis, Label Studio, the LLM); 2 a bad option,
    setting, input file or name."""


for _command in benches.COMMANDS:
    main.add_command(_command)


@main.command()
@json_option("Print the model's path as JSON.")
def prepare(as_json: bool) -> None:
    """Assemble the embedded model under MODEL_DIR (nothing is downloaded from a model hub) and check
    that llama.cpp can decode with it on this CPU."""
    from .engines.factory import SMOKE_DECODE, prepare_model, smoke_test_decode

    settings = load_settings()
    path = prepare_model(settings)
    if settings.llm_backend == "llamacpp":
        from .errors import EngineError

        try:
            smoke_test_decode([sys.executable, "-c", SMOKE_DECODE, str(path)])
        except EngineError as err:
            raise Failure(str(err)) from err
    if as_json:
        print_json({"model": str(path), "backend": settings.llm_backend})
    else:
        click.echo(path)


@main.command()
@click.option("--host", default=None, help="Bind address (default HOST or 127.0.0.1).")
@click.option("--port", default=None, type=click.IntRange(1, 65535), help="Port (default PORT or 9090).")
def serve(host: str | None, port: int | None) -> None:
    """Start gunicorn (web) and an RQ worker, plus the embedded Redis when REDIS_URL is unset."""
    from .supervisor import serve as run

    settings = load_settings()
    overrides = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    try:  # --host is checked like HOST: no public address without auth
        settings = settings.with_overrides(**overrides)
    except ConfigurationError as exc:
        raise InputError(exc.message) from exc
    if not 1 <= settings.port <= 65535:  # else gunicorn dies on bind() with a traceback
        raise InputError(f"PORT must be between 1 and 65535, got {settings.port}")
    sys.exit(run(settings))


@main.command()
@click.option("--burst", is_flag=True, help="Exit when the queue is empty.")
def worker(burst: bool) -> None:
    """Run an RQ worker on RQ_QUEUE_NAME (JSON serializer: jobs carry ids only)."""
    from .refinement.reconciliation import schedule_reconciliation
    from .worker import make_queue, run_worker

    settings = load_settings()
    conn = redis_connection(settings)  # an unreachable Redis is one line, before the worker starts
    if not burst:  # with the Label Studio API: re-read its annotations every RECONCILE_INTERVAL
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
@click.option("--config", "config", type=click.Path(exists=True, dir_okay=False), help="Label Studio label config XML.")
@click.option("--labels", help="Comma-separated labels (a single-choice config on field `text`).")
@click.option("--project", type=int, default=None,
              help="Predict with this project's current version (its label config unless --config/--labels).")
@click.option("--input", "input_", type=click.File("r"), default="-", help="JSONL of task data (default stdin).")
@click.option("--output", type=click.File("w"), default="-", help="JSONL of predictions (default stdout).")
def predict(config: str | None, labels: str | None, project: int | None, input_, output) -> None:
    """Predict a JSONL of tasks ({"text": ...} or {"data": {...}}) → one Label Studio prediction per line
    (JSONL, so no --json)."""
    from .engines.factory import engine_id
    from .errors import BackendError
    from .labeling.label_config import parse_label_config
    from .labeling.model_version import ModelVersion
    from .labeling.service import extract_texts
    from .store.ground_truth import GroundTruthStore
    from .store.versions import VersionRegistry

    settings = load_settings()
    conn = redis_connection(settings) if project is not None else None
    if conn is not None and not (config or labels):
        text = GroundTruthStore(conn, project).label_config()
        if not text:
            raise InputError(f"project {project} has no label config stored yet: give --config or --labels")
    else:
        text = _load_config(config, labels)
    label_task = parse_label_config(text)
    name = "stdin" if input_.name == "<stdin>" else input_.name
    numbers: list[int] = []
    rows = jsonl_rows(input_, name, numbers)
    tasks = [r if isinstance(r.get("data"), dict) else {"data": r} for r in rows]
    items = []
    for number, task in zip(numbers, tasks):
        try:
            items += extract_texts([task], label_task, settings.max_text_chars)
        except BackendError as exc:  # e.g. the field the config reads is missing
            raise InputError(f"{name}, line {number}: {exc.message.replace('tasks[0].', '')}") from exc
    registry = VersionRegistry(conn, engine_id(settings), settings.model_dir, ModelVersion)
    version = registry.current(project, label_task.config_hash, label_task.legacy_hash)
    if project is not None:
        click.echo(f"project {project}: predicting with {version.label}", err=True)
    service = labeling_service(settings)
    with progress_bar(len(items), "predict") as progress:
        for item in items:
            (pred,) = service.predict([item], label_task, version)
            output.write(json.dumps(pred, ensure_ascii=False) + "\n")
            progress.update(1)


@main.command()
@click.option("--project", required=True, type=int)
@json_option(ALREADY_JSON)
def refine(project: int, as_json: bool) -> None:
    """Run one refinement of a project now, in this process (the same code the RQ job runs); a bar
    shows the time spent of its budget (REFINE_MAX_SECONDS)."""
    from .commands.common import budget_bar
    from .errors import LabelStudioUnavailable
    from .refinement.job import run_refinement

    settings = load_settings()
    conn = redis_connection(settings)
    try:
        with budget_bar(settings.refine_max_seconds, f"refine project {project}"):
            result = run_refinement(settings, conn, project)
    except LabelStudioUnavailable as exc:  # a job is retried later; this command is not
        raise Failure(f"{exc.message.removesuffix('; the job is retried later')} (Label Studio at "
                      f"{settings.label_studio_url}); nothing was trained") from exc
    print_json(result)


def _label_studio_error(exc, settings: Settings, project: int) -> click.ClickException:
    """One line for a failed Label Studio API call: unreachable, the key refused, no such project."""
    import httpx

    url = settings.label_studio_url
    cause = exc.__cause__
    doing = exc.message.split(":", 1)[0]  # "reading project 3", "listing tasks of project 3", …
    status = getattr(cause, "status_code", None)
    body = getattr(cause, "body", None)
    detail = body.get("detail") if isinstance(body, dict) else body
    if status in (401, 403):
        return Failure(f"Label Studio at {url} refused the API key ({status}{f': {detail}' if detail else ''}) "
                       f"while {doing}: check LABEL_STUDIO_API_KEY")
    if status == 404 and doing == f"reading project {project}":
        return Failure(f"Label Studio at {url} has no project {project} (404)")
    if status is not None:
        return Failure(f"Label Studio at {url} answered {status} while {doing}{f': {detail}' if detail else ''}")
    if isinstance(cause, httpx.TransportError):
        return Failure(f"Label Studio at {url} cannot be reached while {doing} ({type(cause).__name__}: {cause}): "
                       "check LABEL_STUDIO_URL")
    return Failure(f"Label Studio at {url}: {exc.message}")


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


@main.command()
@click.option("--project", required=True, type=int, help="Label Studio project id.")
@click.option("--only-missing", is_flag=True, help="Only tasks without any prediction (e.g. newly imported ones).")
@click.option("--below-score", type=float, default=None,
              help="Only tasks whose latest prediction scored below S (and tasks without one): re-predict the "
                   "uncertain part of a project after a new version.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Tasks per batch (default PREANNOTATE_BATCH).")
@click.option("--set-project-version/--no-set-project-version", default=True,
              help="Afterwards set project.model_version to our version, so that Label Studio's prediction "
                   "score (sort/filter) uses these predictions (default on).")
@click.option("--dry-run", is_flag=True,
              help="Write nothing: say how many tasks would be predicted, and estimate the time (and, with "
                   "LLM_PRICE_PER_1K_* set, the cost) from --sample of them.")
@click.option("--sample", type=click.IntRange(0, 50), default=5, show_default=True,
              help="With --dry-run: tasks predicted (not written) to measure the speed; 0: no estimate. "
                   "With a paid model they cost their tokens.")
@json_option(ALREADY_JSON)
def preannotate(project: int, only_missing: bool, below_score: float | None, batch_size: int | None,
                set_project_version: bool, dry_run: bool, sample: int, as_json: bool) -> None:
    """Predict every task of a Label Studio project that lacks a prediction of the current version,
    in batches, writing each batch to Label Studio at once (a rerun resumes where it stopped).
    Exits 1 when a task failed (the report lists them)."""
    from .labelstudio.client import label_studio_client
    from .preannotation.batch import LabelStudioApiError, Selection, build_preannotator

    settings = load_settings()
    if batch_size is not None:
        settings = settings.with_overrides(preannotate_batch=batch_size)
    client = label_studio_client(settings)  # fails before anything starts when LS is not configured (exit 2)
    try:
        annotator = build_preannotator(settings, redis_connection(settings), client)
        plan = annotator.plan(project, selection=Selection(only_missing=only_missing, below_score=below_score))
        click.echo(f"project {project}: {len(plan.todo)} of {plan.report.tasks} tasks to predict with "
                   f"{plan.version.label}", err=True)
        if dry_run:
            estimate = annotator.estimate(plan, sample=sample)
            click.echo(_dry_run_line(estimate), err=True)
            print_json(estimate.to_dict())
            return
        with progress_bar(len(plan.todo), "preannotate") as progress:
            report = annotator.execute(plan, progress=progress.update, set_project_version=set_project_version)
    except LabelStudioApiError as exc:
        raise _label_studio_error(exc, settings, project) from exc
    print_json(report.to_dict())
    if report.failed:
        click.echo(f"Error: {len(report.failed)} of {len(plan.todo)} tasks could not be predicted (see \"failed\"); "
                   "the others were written", err=True)
        sys.exit(1)


def _dry_run_line(estimate) -> str:
    """What `preannotate --dry-run` found, in one sentence for stderr."""
    line = f"dry run, nothing written: {estimate.to_predict} tasks would be predicted"
    if not estimate.to_predict:
        return line
    if estimate.estimated_seconds is None:
        return line + " (no estimate: --sample 0, or no sampled task was readable)"
    line += (f", about {_duration(estimate.estimated_seconds)} at {estimate.seconds_per_task:.2f} s a task "
             f"(measured on {estimate.sampled}, model load not included)")
    if estimate.estimated_cost is not None:
        line += f", about {estimate.estimated_cost:.4g} in LLM_PRICE_PER_1K_* units"
    elif estimate.tokens_per_task is not None:
        line += "; set LLM_PRICE_PER_1K_PROMPT/_COMPLETION for a cost"
    else:
        line += ", no token cost (local model)"
    return line


def _registry(settings: Settings):
    from .engines.factory import engine_id
    from .labeling.model_version import ModelVersion
    from .store.versions import VersionRegistry

    return VersionRegistry(redis_connection(settings), engine_id(settings), settings.model_dir, ModelVersion)


@main.group(cls=Group, invoke_without_command=True)
@click.option("--project", required=True, type=int)
@click.option("--rollback", "target", default=None, help="Make this version (label or number) current again.")
@json_option("Print the listing (or the rollback, or what show/diff print) as JSON.")
@click.pass_context
def versions(ctx: click.Context, project: int, target: str | None, as_json: bool) -> None:
    """List a project's versions with their metrics, or roll back to one; `show V` and `diff V W`
    say what a version learnt and what changed."""
    from .store.versions import project_dir

    settings = load_settings()
    registry = _registry(settings)
    ctx.obj = {"project": project, "registry": registry, "files": project_dir(settings.model_dir, project),
               "json": as_json}
    if ctx.invoked_subcommand is not None:
        return
    if target:
        if not registry.lineages(project):
            raise InputError(f"project {project} has no stored versions")
        found = _find_version(ctx.obj, target)
        _servable(registry, found)
        version = registry.rollback(project, found.lineage, found.label)
        if as_json:
            print_json({"project": project, "current": version.label})
        else:
            click.echo(f"project {project}: current version is now {version.label}")
        return
    listed = []
    for lineage in registry.lineages(project):
        current = registry.current_number(project, lineage)
        for v in registry.history(project, lineage):
            report = ctx.obj["files"] / v.label / "report.html"
            listed.append({"label": v.label, "current": v.number == current, "kind": v.kind, "gt_count": v.gt_count,
                           "metrics": v.metrics, "report": str(report) if report.is_file() else None})
    if as_json:
        print_json({"project": project, "versions": listed})
        return
    for v in listed:
        click.echo(f"{'*' if v['current'] else ' '} {v['label']:<40} {v['kind']:<24} gt={v['gt_count']:<5} "
                   f"{json.dumps(v['metrics'])}" + (f" report: {v['report']}" if v["report"] else ""))


def _servable(registry, version) -> None:
    """Refuse a rollback to a version whose fine-tuned head reads a body that was dropped: it
    would answer every /predict with 503 until a job replaced it."""
    from .refinement.lost_body import lost_heads
    from .store.tuned_bodies import TunedBodies

    if lost := lost_heads(version.controls, TunedBodies(registry.conn)):
        raise InputError(f"{version.label} cannot be served again: the fine-tuned body its head reads "
                         f"({', '.join(sorted(d.body for d in lost.values()))}) was dropped, as it is for every "
                         "version older than the TUNED_BODIES_KEPT newest; roll back to a newer version")


def _find_version(obj: dict, target: str):
    """A stored version of the project by label, or by number (`2`, `v2`) when one lineage has it."""
    project = obj["project"]
    found = obj["registry"].find(project, target)
    if not found:
        raise InputError(f"project {project} has no version {target!r} (see: versions --project {project})")
    if len(found) > 1:
        raise InputError(f"several label configs have a version {target!r}: give the full label, one of "
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
@json_option("Print it as JSON (also: versions --json show …).")
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
    if as_json or obj["json"]:
        print_json(facts)
    else:
        _print_facts(facts)


@versions.command()
@click.argument("old")
@click.argument("new")
@json_option("Print it as JSON (also: versions --json show …).")
@click.pass_obj
def diff(obj: dict, old: str, new: str, as_json: bool) -> None:
    """What changed from version OLD to NEW, control by control."""
    from .labeling.version_summary import difference

    changes = difference(_find_version(obj, old), _find_version(obj, new))
    if as_json or obj["json"]:
        print_json(changes)
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


@main.command()
@click.option("--project", required=True, type=int)
@click.option("--control", default=None, help="One control's ranking (every control's by default).")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 500), help="Rows per control.")
@json_option("Print the ranking as JSON.")
def suspects(project: int, control: str | None, limit: int, as_json: bool) -> None:
    """The human labels most likely wrong, from the last refinement job (fixed ones left out)."""
    from .store.ground_truth import GroundTruthStore
    from .store.suspects import SuspectStore, UnknownControl, narrowed

    conn = redis_connection(load_settings())
    ranking = SuspectStore(conn, project).open_rows(GroundTruthStore(conn, project))
    try:
        controls = narrowed(ranking, control, limit)
    except UnknownControl as exc:
        raise InputError(str(exc)) from None
    if as_json:
        print_json({**ranking, "controls": controls})
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
