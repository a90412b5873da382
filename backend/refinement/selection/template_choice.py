"""Version 0's instruction template per single-choice control, chosen without labels on the
project's own tasks (labeling/templates.py says why and how). The template with the most mutual
information replaces the one served only if it beats it in 1 - REFINE_ALPHA of bootstrap
resamples of the texts.

It runs in the refinement job while the project has no version learnt from ground truth, each
time the distinct texts /predict saw reach one of CHOICE_SIZES. Each choice is recorded per
lineage (a choice that keeps what is served publishes nothing and is not made again until the
sample grows). With batch calibration on, the chosen template's answers on the same texts also
set its calibration (labeling/calibration.py, `Calibrator.batched`). A new template, or a batch
bias that moved since the version served, becomes a version of kind `template`, whose parent is
the one it replaces.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import redis

from ...labeling.calibration import Calibrator
from ...labeling.label_config import ChoiceControl, LabelTask
from ...labeling.model_version import ModelVersion
from ...labeling.recipe import ControlRecipe
from ...labeling.service import LabelingService
from ...labeling.templates import DEFAULT, TEMPLATES, advantage, mutual_information, selectable, template_prompt
from ...store.redis import key
from ...store.unlabelled import MAX_TEXTS, UnlabelledTexts
from ...store.versions import VersionRegistry

log = logging.getLogger(__name__)

# Sample sizes (distinct unlabelled texts) at which a choice is made: the first as soon as a few
# dozen texts can tell templates apart, again as the sample grows, last when it is full.
CHOICE_SIZES = (32, 128, MAX_TEXTS)
KIND = "template"
# a batch bias that moved less than this (nats, on every label) since the version served moves
# no probability by more than about a point: not worth a version of its own
BIAS_TOLERANCE = 0.05
# a label's mean answer over fewer texts than this per label is mostly noise: dividing by it
# makes rarely chosen labels over-confident (many-label controls wait for a bigger sample, or
# keep content-free calibration alone)
MIN_TEXTS_PER_LABEL = 8


@dataclass(frozen=True)
class TemplateChoice:
    template: str  # what is served from now on
    scores: dict[str, float]  # template → mutual information (nats) on the texts
    texts: int
    seconds: float
    highest: str = DEFAULT  # the template with the most mutual information
    incumbent: str = DEFAULT  # the one served before
    confidence: float = 1.0  # share of bootstrap resamples on which `highest` beat `incumbent`
    calibrator: Calibrator | None = None  # the template's batch calibration; None: content-free only
    batch_note: str = ""  # why there is no batch calibration

    def to_dict(self) -> dict:
        return {"template": self.template, "criterion": "mutual_information", "scores": self.scores,
                "highest": self.highest, "incumbent": self.incumbent, "confidence": self.confidence,
                "unlabelled_texts": self.texts, "seconds": self.seconds,
                "calibration": self.calibrator.to_dict() if self.calibrator else {"method": "contextual",
                                                                                  "batch": self.batch_note}}

    def moved(self, served: Calibrator | None) -> bool:
        """Whether this choice serves something else than `served` (the served recipe's calibrator)."""
        if self.template != self.incumbent:
            return True
        if self.calibrator is None:
            return served is not None
        return served is None or float(np.abs(np.subtract(self.calibrator.bias, served.bias)).max()) > BIAS_TOLERANCE


def due(seen: int, chosen_on: int) -> bool:
    """A choice size has been reached since the last choice (made on `chosen_on` texts)."""
    return any(chosen_on < size <= seen for size in CHOICE_SIZES)


def current_template(version: ModelVersion, control: str) -> str:
    """The template a version serves for `control` (DEFAULT for the built-in prompt)."""
    name = version.recipe(control).prompt.name
    return name[3:] if name.startswith("v0-") and name[3:] in TEMPLATES else DEFAULT


def template_answers(service: LabelingService, control: ChoiceControl, name: str, texts: list[str]) -> np.ndarray:
    """Template `name`'s calibrated answers on `texts`, as version 0 would serve them."""
    recipe = ControlRecipe(template_prompt(name, control))
    return np.array([p.probabilities for p, _ in service.predict_control(control, recipe, texts)])


def pick(answers: dict[str, np.ndarray], incumbent: str, alpha: float) -> tuple[str, str, float]:
    """(the template served from now on, the one with the most mutual information, the share of
    bootstrap resamples on which that one beat `incumbent`): it replaces `incumbent` only if the
    share is at least 1 - `alpha`; a tie keeps `incumbent`."""
    scores = {name: mutual_information(p) for name, p in answers.items()}
    highest = max(scores, key=lambda name: (scores[name], name == incumbent))
    confidence = 1.0 if highest == incumbent else advantage(answers[highest], answers[incumbent])
    return (highest if confidence >= 1 - alpha else incumbent), highest, confidence


def batch_ready(texts: int, labels: int) -> bool:
    """Enough texts to batch-calibrate a control with `labels` labels."""
    return texts >= MIN_TEXTS_PER_LABEL * labels


def batch_calibrator(service: LabelingService, control: ChoiceControl, name: str,
                     answers: np.ndarray) -> tuple[Calibrator | None, str]:
    """Template `name`'s content-free calibration followed by the batch one its `answers` on
    the project's texts set, or None and why not."""
    if not batch_ready(len(answers), len(control.labels)):
        return None, (f"{len(answers)} texts for {len(control.labels)} labels; "
                      f"needs {MIN_TEXTS_PER_LABEL} a label")
    served = service.calibrator(control, template_prompt(name, control))
    if served.method != "contextual":
        return None, "CALIBRATION=none serves raw probabilities"
    return served.batched(answers), ""


def choose_template(service: LabelingService, control: ChoiceControl, texts: list[str], incumbent: str = DEFAULT,
                    alpha: float = 0.05, batch: bool = True) -> TemplateChoice:
    """Every template scored on `texts`, `pick`'s choice among them and, with `batch`, the
    chosen one's batch calibration on the same answers."""
    t0 = time.monotonic()
    answers = {name: template_answers(service, control, name, texts) for name in TEMPLATES}
    chosen, highest, confidence = pick(answers, incumbent, alpha)
    scores = {name: round(mutual_information(p), 5) for name, p in answers.items()}
    calibrator, note = (batch_calibrator(service, control, chosen, answers[chosen]) if batch
                        else (None, "BATCH_CALIBRATION=false"))
    return TemplateChoice(chosen, scores, len(texts), round(time.monotonic() - t0, 2), highest, incumbent,
                          round(confidence, 3), calibrator, note)


def learnt_from_labels(version: ModelVersion) -> bool:
    return version.number > 0 and not version.kind.startswith(KIND)


def choose_templates(conn: redis.Redis, registry: VersionRegistry, project: int, label_task: LabelTask,
                     current: ModelVersion, service: Callable[[], LabelingService],
                     labelled: frozenset[str] = frozenset(), alpha: float = 0.05,
                     batch: bool = True) -> tuple[ModelVersion, dict | None]:
    """The version the job goes on from (a new template version, or `current`) and what was
    chosen (None when no choice was due). Controls in `labelled` have enough ground truth for
    the candidates, which judge wordings on labels: no template is chosen for them. `service` is
    built only when a choice is due."""
    if learnt_from_labels(current):
        return current, None
    record_key = key("project", project, "template-choice", label_task.config_hash)
    record = json.loads(conn.get(record_key) or "{}")
    unlabelled = UnlabelledTexts(conn, project)
    work = [c for c in label_task.controls if selectable(c) and c.name not in labelled
            and due(unlabelled.count(c.field), record.get(c.name, {}).get("unlabelled_texts", 0))]
    if not work:
        return current, None
    choices = {c.name: choose_template(service(), c, unlabelled.texts(c.field), current_template(current, c.name),
                                       alpha, batch) for c in work}
    summary = {name: choice.to_dict() for name, choice in choices.items()}
    record.update(summary)
    conn.set(record_key, json.dumps(record, sort_keys=True), ex=90 * 24 * 3600)
    changed = {c: choices[c.name] for c in work if choices[c.name].moved(current.recipe(c.name).calibrator)}
    for name, choice in choices.items():
        log.info("project %s control %s: template %r chosen on %d unlabelled texts (%s)%s", project, name,
                 choice.template, choice.texts, ", ".join(f"{t} {s:.3f}" for t, s in choice.scores.items()),
                 ", batch-calibrated" if choice.calibrator else "")
    if not changed:
        return current, {"status": "kept", "controls": summary}
    recipes = dict(current.controls)
    recipes.update({c.name: ControlRecipe(template_prompt(choice.template, c), choice.calibrator)
                    for c, choice in changed.items()})
    draft = ModelVersion(
        label="", lineage=label_task.config_hash, controls=recipes,
        kind=f"{KIND}:" + "+".join(f"{c.name}={choice.template}" for c, choice in changed.items()),
        metrics={**current.metrics, **{c.name: {"template": choice.to_dict()} for c, choice in changed.items()}},
        gt_count=current.gt_count, parent=current.label, trained_on=current.trained_on, spans=current.spans)
    version = registry.publish(project, draft)
    log.info("project %s: %s published (%s)", project, version.label, draft.kind)
    return version, {"status": "published", "model_version": version.label, "kind": draft.kind, "controls": summary}
