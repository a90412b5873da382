"""The learning path: ground truth → job → candidates → cross-validation → selection → version.

- `scheduler.py`: debounced RQ jobs per project, one running per project (a Redis lock), retries.
- `job.py`: one refinement run: reconcile with Label Studio, read the ground truth, refine each
  control within the job's time budget, publish a version and its report.
- `selection/`: per control, which candidates run (cheapest first, within the budget), how the
  current version is judged fairly, and the rule that accepts a candidate only when it is
  significantly better.
- `candidates/`: the recipes a job tries (fitted calibration, few-shot prompts, an instruction
  rewrite, reasoning first, an embedding head), each scored out of fold.
- `validation/`: k-fold cross-validation, pace and budget, the paired significance tests.

Stages only import the ones below them (.importlinter).
"""
