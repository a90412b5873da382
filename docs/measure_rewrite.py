"""Measure the instruction-rewrite candidate against version 0 on a labelled set (docs/benchmarks.md).

    python docs/measure_rewrite.py ../shared/datasets/subjectivity/train.jsonl --limit 120

Runs optimize_control as a refinement job would (default REFINE_REWRITE_* budgets and the
default job deadline), without the few-shot candidates (they do not change what is measured),
and prints the decision table: cross-validated macro-F1 on the judge items, the rewrite's cost in
seconds and LLM calls, and the instruction it found.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.engines.factory import load_engine  # noqa: E402
from backend.evaluation.datasets import load_dataset  # noqa: E402
from backend.labeling.label_config import parse_label_config  # noqa: E402
from backend.labeling.recipe import ControlRecipe  # noqa: E402
from backend.labeling.service import LabelingService  # noqa: E402
from backend.refinement.optimizer import optimize_control  # noqa: E402
from backend.refinement.refine import instruction_rewrite  # noqa: E402
from backend.settings import Settings  # noqa: E402

COLUMNS = ("macro_f1", "accuracy", "log_loss", "p_vs_current", "seconds", "rewrite_llm_calls",
           "rewrite_teacher_calls", "rewrite_proposals", "rewrite_rounds", "rewrite_start_minibatch_f1",
           "rewrite_minibatch_f1", "rewrite_stopped")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dataset")
    parser.add_argument("--limit", type=int, default=120)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = Settings.from_env()
    data = load_dataset(args.dataset, limit=args.limit)
    control = parse_label_config(data.label_config()).controls[0]
    service = LabelingService(load_engine(settings), calibration=settings.calibration)
    t0 = time.monotonic()
    decision = optimize_control(service, control, list(data.texts), np.array(data.gold), ControlRecipe(),
                                folds=settings.refine_folds, shots=0, alpha=settings.refine_alpha,
                                deadline=t0 + settings.refine_max_seconds,
                                rewrite=instruction_rewrite(settings, service.engine))
    print(f"\n{data.name}: {len(data.texts)} items, judged on {decision.n_eval}, "
          f"{time.monotonic() - t0:.0f} s in all; skipped: {decision.skipped or '-'}")
    print("| candidate | " + " | ".join(COLUMNS) + " |")
    for row in decision.table:
        print(f"| {row['name']} | " + " | ".join(str(row.get(c, "")) for c in COLUMNS) + " |")
    print(f"chosen: {decision.best.name}, accepted: {decision.accepted} (p={decision.p_value:.4f}); "
          "the rewrite's instruction is in the log line 'control ... rewrite:' above")


if __name__ == "__main__":
    main()
