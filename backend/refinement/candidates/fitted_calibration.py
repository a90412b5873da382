"""The current prompt with a calibration fitted on ground truth (a bias and a temperature per
label; per-label bias and scale for multiple choice), around its content-free calibration: a fit
on logits the current version's pass already has, so it costs seconds and always runs."""
from __future__ import annotations

from ..validation.crossval import evaluate_fitted_calibration
from .contract import ControlJob, Plan


class FittedCalibration:
    def plans(self, job: ControlJob) -> list[Plan]:
        return [Plan("calibrated", lambda: evaluate_fitted_calibration(
            "calibrated", job.current.prompt, job.current_logits, job.gold, job.folds, job.content_free,
            kind=job.kind), cheap=True)]
