"""One refinement run: ground truth → candidates per control → evaluation → maybe a new version."""
from __future__ import annotations

import logging
import time

import numpy as np
import redis

from ..engines.factory import engine_id, shared_engine
from ..errors import LabelStudioUnavailable
from ..labeling.label_config import ChoiceControl, parse_label_config
from ..labeling.model_version import ModelVersion
from ..labeling.recipe import ControlRecipe
from ..labeling.service import LabelingService
from ..labeling.spans import span_support
from ..labeling.tuned_body import body_loader
from ..labelstudio.reconcile import reconcile
from ..settings import Settings
from ..store.ground_truth import GoldItem, GroundTruthStore
from ..store.logit_cache import LogitCache
from ..store.predicted_logits import PredictedLogits, drop_other_versions
from ..store.redis import key
from ..store.tuned_bodies import TunedBodies
from ..store.versions import VersionRegistry, project_dir, report_key
from .body_retention import drop_unneeded_bodies
from .candidates.instruction_rewrite import Rewrite, RewriteBudget
from .candidates.reasoning_first import reasoning_modes
from .candidates.teacher import build_teacher
from .candidates.tuned_head import Tuning
from .candidates.typed_instruction import most_typed
from .fingerprint import job_fingerprint
from .label_review import keep_ranking, suspect_rows
from .lost_body import lost_heads
from .selection.current_refit import tuned_head
from .selection.optimizer import ControlSearch
from .selection.template_choice import choose_templates
from .span_learning import refine_spans, usable_span_gold

log = logging.getLogger(__name__)

MIN_ITEMS = 8  # fewer labelled items than this cannot show a significant difference anyway
# When no cheap candidate wins, a refresh (the current recipe refit on all ground truth, or a
# candidate, whichever is best of those no worse than the current version) is published once the
# ground truth has grown this many times over since the current version was fitted: a choice and
# parameters fitted on 50 items deserve a second look at 100, and a version per job would churn
# model_version for nothing.
REFRESH_GROWTH = 2


def refresh_due(gt_count: int, fitted_on: int) -> bool:
    """Whether the ground truth has grown enough since the current version was fitted to publish
    a refresh (ControlSearch._refresh) on it."""
    return fitted_on > 0 and gt_count >= REFRESH_GROWTH * fitted_on


def store_version_report(conn: redis.Redis, settings: Settings, project: int, label: str, reports: list,
                         refreshed: frozenset[str] = frozenset(), span_reports: list | None = None,
                         suspects: dict[str, dict] | None = None) -> None:
    """The held-out evaluation behind a published version, as HTML: in Redis (any web replica can
    serve it at /versions/<label>/report) and under MODEL_DIR/versions/project-<id>/<label>/.
    `refreshed` names the controls published as a refresh (a control whose refresh was not due
    keeps its recipe, and its report shows the best candidate as before)."""
    from ..metrics.html_report import multilabel_system_metrics, system_metrics, write_report

    systems = []
    for control, decision in reports:
        labels = list(control.labels)
        metrics_of = multilabel_system_metrics if control.multiple else system_metrics
        chosen = decision.refresh if control.name in refreshed else decision.best
        for role, result in (("current", decision.current), ("chosen", chosen)):
            decides = {"threshold": result.threshold} if control.multiple else {}
            systems.append(metrics_of(f"{control.name}: {role} ({result.name}), cross-validated",
                                      result.gold, labels, probs=result.probs, **decides))
    for control, decision in span_reports or ():
        systems += decision.systems
    if not systems:
        return
    meta = {"project": project, "model_version": label,
            "decisions": {c.name: d.summary() for c, d in [*reports, *(span_reports or ())]}}
    path = write_report(project_dir(settings.model_dir, project) / label,
                        title=f"{label}: held-out evaluation",
                        labels=list(reports[0][0].labels) if reports else list(span_reports[0][0].labels),
                        systems=systems, meta=meta, suspects=suspects)
    conn.set(report_key(project, label), path.read_text(encoding="utf-8"))


def instruction_rewrite(settings: Settings, engine) -> Rewrite | None:
    """The rewrite candidate's teacher and budget, or None when it is off or nobody can teach."""
    if settings.refine_rewrite_rounds == 0:
        return None
    teacher = build_teacher(settings, engine)
    if teacher is None:
        log.info("instruction rewrite off: the engine cannot generate and TEACHER_BASE_URL/TEACHER_MODEL are unset")
        return None
    return Rewrite(teacher, RewriteBudget.from_settings(settings))


def usable_gold(control: ChoiceControl, gold: list[GoldItem], newest: int) -> tuple[list[GoldItem], np.ndarray]:
    """The `newest` gold items that label `control`, and their targets: a label index per item
    (single choice: exactly one label), or an items × labels 0/1 matrix (multiple choice)."""
    index = {label: i for i, label in enumerate(control.labels)}
    usable = [g for g in gold if control.field in g.texts and g.labels.get(control.name)
              and all(label in index for label in g.labels[control.name])
              and (control.multiple or len(g.labels[control.name]) == 1)]
    usable = sorted(usable, key=lambda g: g.updated_at)[-newest:]
    if not control.multiple:
        return usable, np.array([index[g.labels[control.name][0]] for g in usable])
    targets = np.zeros((len(usable), len(control.labels)), dtype=np.int8)
    for row, g in zip(targets, usable):
        row[[index[label] for label in g.labels[control.name]]] = 1
    return usable, targets


def too_few(control: ChoiceControl, targets: np.ndarray) -> str:
    """Why a control's ground truth cannot be learnt from yet, or "". A single-choice control
    needs MIN_ITEMS items and two of its labels among them: on items that all carry one label,
    every fitted candidate learns to give that label and scores perfectly where version 0 is
    judged on its mistakes alone, so the choice passes any test and names every new text so."""
    if len(targets) < MIN_ITEMS:
        return f"{len(targets)} labelled items; need {MIN_ITEMS}"
    if not control.multiple and len(np.unique(targets)) < 2:
        return (f"all {len(targets)} labelled items have the label {control.labels[targets[0]]!r}; "
                "need two labels to learn to tell them apart")
    return ""


def control_deadline(now: float, deadline: float, controls_left: int) -> float:
    """Each control still to refine gets an equal share of the job's time left: the first one's
    candidates cannot use up the time of the ones after it, and what one leaves unused goes to
    the rest."""
    return now + max(0.0, deadline - now) / max(1, controls_left)


def publish(registry: VersionRegistry, project: int, label_task, parent: ModelVersion, recipes: dict,
            won: dict, refreshed: dict, gt_count: int, trained_on: set[int], *, span_prompts: dict,
            span_won: dict | None = None) -> ModelVersion:
    """Publish `parent` with the recipes of the controls a stage `won` (ControlDecisions), the
    `refreshed` ones (CandidateResults: what a due refresh ships) and the span prompts."""
    span_won = span_won or {}
    recipes = {**recipes, **{n: d.best.recipe for n, d in won.items()}, **{n: r.recipe for n, r in refreshed.items()}}
    kind = "+".join([f"{n}:{d.best.name}" for n, d in won.items()] + [f"{n}:{d.summary()['best']}" for n, d in span_won.items()]
                    + [f"{n}:{r.name}" for n, r in refreshed.items()])
    metrics = {**{n: d.best.metrics for n, d in won.items()}, **{n: d.summary()["best_metrics"] for n, d in span_won.items()},
               **{n: r.metrics for n, r in refreshed.items()}}
    draft = ModelVersion(label="", lineage=label_task.config_hash, controls=recipes, kind=kind, metrics=metrics,
                         gt_count=gt_count, parent=parent.label, trained_on=tuple(sorted(trained_on)), spans=span_prompts)
    return registry.publish(project, draft)


def publish_tuned(registry: VersionRegistry, bodies: TunedBodies, project: int, label_task, parent: ModelVersion,
                  won: dict, searches: list, gt_count: int, trained_on: set[int]) -> ModelVersion:
    """Publish `parent` with the fine-tuned heads the tuned stage accepted, their bodies stored
    first: a replica that sees the version must find what its head reads."""
    for name, decision in won.items():
        search = next(s for c, s in searches if c.name == name)
        body = search.job.bodies[decision.best.recipe.head.embedder]
        bodies.save(body.name, body.top, body.tensors)
    return publish(registry, project, label_task, parent, dict(parent.controls), won, {}, gt_count, trained_on,
                   span_prompts=dict(parent.spans))


def report(conn: redis.Redis, settings: Settings, project: int, label: str, reports: list, out: dict,
           refreshed: frozenset[str] = frozenset(), span_reports: list | None = None,
           suspects: dict[str, dict] | None = None) -> None:
    """Store a published version's report; one that cannot be written must not fail (and retry)
    the job: the version is published."""
    try:
        store_version_report(conn, settings, project, label, reports, refreshed, span_reports, suspects)
        out["report"] = f"/versions/{label}/report?project={project}"
    except Exception as exc:
        log.exception("project %s: the report of %s could not be stored", project, label)
        out["report_error"] = f"{type(exc).__name__}: {exc}"


def tuned_key(project: int, lineage: str, control: str) -> str:
    """Per label config (`lineage`, its hash): a control renamed or given other labels starts over."""
    return key("project", project, "tuned-on", lineage, control)


def tuning_due(settings: Settings, conn: redis.Redis, project: int, lineage: str, control: str,
               items: int) -> Tuning | None:
    """The fine-tuning to try for a control with `items` labelled items, or None: the stage is off,
    the control has too few items, or they have not doubled since its last tuned stage under
    this label config (its minutes of CPU would mostly refit what the last one found; the
    current version's refresh and the cheaper candidates follow the ground truth meanwhile)."""
    if settings.refine_tune_seconds <= 0 or items < settings.refine_tune_min_items:
        return None
    last = int(conn.get(tuned_key(project, lineage, control)) or 0)
    return Tuning.from_settings(settings) if not last or items >= REFRESH_GROWTH * last else None


def tuned_stage(settings: Settings, conn: redis.Redis, project: int, lineage: str, searches: list,
                decisions: dict, refreshed: dict, due: bool = False) -> dict:
    """Run the fine-tuned head's stage of every control it is due for, within REFINE_TUNE_SECONDS
    (shared like the job's budget), against what the job serves now (`refreshed`: the refreshes
    it shipped, by control); `due`: the current version's refresh is due (refresh_due), which
    for a control whose head reads a fine-tuned body only this stage can make. Note each outcome
    under `tuned` in the control's decision. Returns the accepted decisions by control."""
    ready = [(c, s) for c, s in searches if s.job.tuning is not None]
    deadline = time.monotonic() + settings.refine_tune_seconds
    won = {}
    for done, (control, search) in enumerate(ready):
        decision = search.tuned_stage(control_deadline(time.monotonic(), deadline, len(ready) - done),
                                      refreshed.get(control.name), refresh_tuned=due and tuned_head(search.job.current))
        if decision is None:
            continue
        ran = bool(decision.results)
        decisions[control.name]["tuned"] = {"best": decision.best.name, "accepted": decision.accepted,
                                            "refresh": decision.refreshes_tuned,
                                            "p_value": round(decision.p_value, 5), "candidates": decision.table,
                                            "skipped": decision.skipped}
        if ran:  # tried on these items: again once they have doubled
            conn.set(tuned_key(project, lineage, control.name), len(search.used))
        if decision.accepted:
            won[control.name] = decision
    return won


def run_refinement(settings: Settings, conn: redis.Redis, project: int, engine=None) -> dict:
    t0 = time.monotonic()
    deadline = t0 + settings.refine_max_seconds
    store = GroundTruthStore(conn, project)
    out: dict = {"project": project}
    if settings.label_studio_api:
        out["reconcile"] = reconcile(settings, store)
        if out["reconcile"]["status"] != "ok":  # never train on ground truth Label Studio did not confirm
            raise LabelStudioUnavailable(f"project {project}: reconciliation with Label Studio failed "
                                         f"({out['reconcile']['error']}); the job is retried later")
    config = store.label_config()
    if not config:
        return {**out, "status": "skipped", "reason": "no label config known for this project yet"}
    label_task = parse_label_config(config)
    model = engine_id(settings)
    registry = VersionRegistry(conn, model, settings.model_dir, ModelVersion)
    current = registry.current(project, label_task.config_hash, label_task.legacy_hash)
    gold = store.items()
    out.update(gt_count=len(gold), current=current.label)
    cache = LogitCache(conn, project, model, predicted=PredictedLogits(conn, project, current.label, model))
    bodies = TunedBodies(conn)
    services: list[LabelingService] = []

    def service() -> LabelingService:  # loads the model only for a job that scores something
        if not services:
            services.append(LabelingService(engine or shared_engine(settings), calibration=settings.calibration,
                                            logit_cache=cache, bodies=body_loader(bodies.load)))
        return services[0]

    usable_by_control = {c.name: usable_gold(c, gold, settings.refine_max_eval_items) for c in label_task.controls}
    lacking = {c.name: too_few(c, usable_by_control[c.name][1]) for c in label_task.controls}
    templates = None
    if settings.template_choice:
        labelled = frozenset(name for name, why in lacking.items() if not why)
        current, templates = choose_templates(conn, registry, project, label_task, current, service, labelled,
                                              settings.refine_alpha, settings.batch_calibration)
    if templates is not None:
        out["templates"] = templates
    lost = lost_heads(current.controls, bodies)
    if lost:
        out["lost_bodies"] = {n: d.body for n, d in lost.items()}
        log.warning("project %s: the fine-tuned bodies of %s are no longer stored; judging %s without them", project,
                    out["lost_bodies"], current.label)
        for name in lost:  # tune a body anew in this job
            conn.delete(tuned_key(project, label_task.config_hash, name))
    last_key = key("project", project, "last-job-fingerprint")
    fingerprint = job_fingerprint(settings, model, label_task.config_hash, current.label, gold)
    if not lost and (conn.get(last_key) or b"").decode() == fingerprint:
        log.info("project %s refinement: nothing changed since the last finished job", project)
        return {**out, "status": "unchanged", "model_version": current.label, "seconds": round(time.monotonic() - t0, 2),
                "reason": "the ground truth, the current version and the learning settings are those of the "
                          "last finished job"}
    service = service()
    rewrite = instruction_rewrite(settings, service.engine)
    reasoning = reasoning_modes(settings, service.engine)
    recipes = {**current.controls, **{name: dropped.recipe for name, dropped in lost.items()}}
    decisions: dict[str, dict] = {}
    work = []
    for control in label_task.controls:
        usable, targets = usable_by_control[control.name]
        if lacking[control.name]:
            decisions[control.name] = {"skipped": lacking[control.name]}
        else:
            work.append((control, usable, targets))
    span_work = []
    for control in label_task.span_controls:
        usable = usable_span_gold(control, gold, settings.refine_max_eval_items)
        if len(usable) < MIN_ITEMS:
            decisions[control.name] = {"skipped": f"{len(usable)} annotated texts; need {MIN_ITEMS}"}
        elif unsupported := span_support(service.engine, control):
            decisions[control.name] = {"skipped": unsupported}
        else:
            span_work.append((control, usable))
    seen = set(current.trained_on)
    trained_on: set[int] = set()
    searches: list[tuple[ChoiceControl, ControlSearch]] = []
    for done, (control, usable, targets) in enumerate(work):
        share = control_deadline(time.monotonic(), deadline, len(work) + len(span_work) - done)
        newest_first = list(reversed(usable))
        typed = most_typed([g.instruction for g in newest_first],
                           agreed=[g.instruction_effect.get(control.name, {}).get("agreed") for g in newest_first])
        search = ControlSearch(service, control, [g.texts[control.field] for g in usable], targets,
                               recipes.get(control.name) or ControlRecipe(), folds=settings.refine_folds,
                               shots=settings.refine_max_shots, alpha=settings.refine_alpha, deadline=share,
                               judge_mask=np.array([g.task_id not in seen for g in usable]), rewrite=rewrite,
                               reasoning=reasoning, typed=typed,
                               tuning=tuning_due(settings, conn, project, label_task.config_hash, control.name,
                                                 len(usable)))
        trained_on.update(g.task_id for g, used in zip(usable, search.used) if used)
        first = search.first_stage()
        decisions[control.name] = {"first_stage": {"best": first.best.name, "accepted": first.accepted,
                                                   "p_value": round(first.p_value, 5),
                                                   **({"first_fit": True} if first.first_fit else {})}}
        searches.append((control, search))
    stages: list[dict] = []
    published = current
    due = refresh_due(len(gold), current.gt_count)
    first_won = {c.name: s.first for c, s in searches if s.first.accepted}
    # a control whose cheap stage accepted nothing ships its refresh now, if due: no worse than
    # the current version on more of the same ground truth, and an LLM candidate may still beat it
    early_refresh = {c.name: s.first.refresh for c, s in searches if due and s.first.refresh is not None}
    if first_won or early_refresh:  # the cheap stage's better version ships now; the LLM-heavy search may take minutes
        published = publish(registry, project, label_task, published, recipes, first_won, early_refresh, len(gold),
                            trained_on, span_prompts=dict(current.spans))
        stages.append({"stage": "cheap", "model_version": published.label, "kind": published.kind,
                       "seconds": round(time.monotonic() - t0, 2)})
        log.info("project %s refinement: published %s (%s) after the cheap stage, in %.1f s", project,
                 published.label, published.kind, time.monotonic() - t0)
        report(conn, settings, project, published.label, [(c, s.first) for c, s in searches], out,
               frozenset(early_refresh))
        recipes.update({**{name: d.best.recipe for name, d in first_won.items()},
                        **{name: r.recipe for name, r in early_refresh.items()}})
    span_prompts = dict(current.spans)
    span_reports = []
    for done, (control, usable) in enumerate(span_work):
        decision = refine_spans(service, control, usable, current.span_prompt(control.name), alpha=settings.refine_alpha,
                                deadline=control_deadline(time.monotonic(), deadline, len(searches) + len(span_work) - done),
                                rewrite=rewrite)
        decisions[control.name] = decision.summary()
        span_reports.append((control, decision))
        if decision.accepted:  # its pool is not `trained_on`: span prompts are judged leaving each text out
            span_prompts[control.name] = decision.prompt
    suspects: dict[str, dict] = {}
    reports: list[tuple] = []
    for done, (control, search) in enumerate(searches):
        decision = search.second_stage(control_deadline(time.monotonic(), deadline, len(searches) - done))
        decisions[control.name] = {**decision.summary(), **decisions[control.name]}
        if decision.issues_from:
            suspects[control.name] = suspect_rows(control, [g for g, used in zip(usable_by_control[control.name][0],
                                                                                  decision.used) if used], decision)
        reports.append((control, decision))
    out["controls"] = decisions
    won = {c.name: d for c, d in reports if d.accepted
           and not (c.name in first_won and d.best.name == first_won[c.name].best.name)}
    won_spans = {c.name: d for c, d in span_reports if d.accepted}
    if won or won_spans:
        published = publish(registry, project, label_task, published, recipes, won, {}, len(gold), trained_on,
                            span_prompts=span_prompts, span_won=won_spans)
        stages.append({"stage": "llm", "model_version": published.label, "kind": published.kind,
                       "seconds": round(time.monotonic() - t0, 2)})
    if published is not current:  # its report (the cheap stage's, if nothing later won) gets the whole search
        report(conn, settings, project, published.label, reports, out, frozenset(early_refresh) - set(won),
               span_reports, suspects)
    if lost and published is current:  # nothing better won: serve what needs no lost body
        published = publish(registry, project, label_task, published, recipes, {}, lost, len(gold), trained_on,
                            span_prompts=span_prompts)
    tuned_won = tuned_stage(settings, conn, project, label_task.config_hash, searches, decisions, early_refresh, due)
    if tuned_won:
        published = publish_tuned(registry, bodies, project, label_task, published, tuned_won, searches, len(gold),
                                  trained_on)
        stages.append({"stage": "tuned", "model_version": published.label, "kind": published.kind,
                       "seconds": round(time.monotonic() - t0, 2)})
        report(conn, settings, project, published.label, [(c, tuned_won[c.name]) for c, _ in searches
                                                           if c.name in tuned_won], out)
    if stages:
        out["stages"] = stages
    if published is not current:
        status = ("published" if first_won or won or won_spans or tuned_won
                  else "refreshed" if early_refresh else "repaired")
        out.update(status=status, model_version=published.label, kind=published.kind)
        if dropped := drop_unneeded_bodies(registry, bodies, project, settings.tuned_bodies_kept):
            out["dropped_bodies"] = dropped  # only versions older than the rollback window read them
    elif templates is not None and templates["status"] == "published":  # no better version on labels
        out.update(status="published", model_version=current.label, kind=current.kind)
    else:
        out.update(status="kept", model_version=current.label)
    if suspects:
        out.update(keep_ranking(settings, conn, project, label_task, {
            "project": project, "model_version": out["model_version"], "gt_count": len(gold), "controls": suspects}))
    out["logit_cache"] = {**cache.stats(), "dropped": cache.prune()}
    drop_other_versions(conn, project, out["model_version"])  # no later job reads what they predicted
    # with the version it ends with: a job after a publish, on the same ground truth, ends at once
    conn.set(last_key, job_fingerprint(settings, model, label_task.config_hash, out["model_version"], gold),
             ex=30 * 24 * 3600)
    out["seconds"] = round(time.monotonic() - t0, 2)
    log.info("project %s refinement: %s %s in %.1f s%s", project, out["status"], out["model_version"], out["seconds"],
             f"; its report: {out['report']}" if "report" in out else "")
    return out
