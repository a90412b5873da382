"""A job's head that reads the LLM's state at the answer, on the embedded model: the job gets the
states from the current version's pass, and the version serves what the job judged."""
import time

import numpy as np
import pytest

from backend.evaluation.datasets import load_dataset
from backend.labeling.label_config import parse_label_config
from backend.labeling.recipe import ControlRecipe
from backend.labeling.service import LabelingService
from backend.refinement.selection.optimizer import ControlSearch
from tests.conftest import DATASETS

pytestmark = pytest.mark.model

DATA = load_dataset(DATASETS / "sms_spam" / "train.jsonl", limit=48)
CONTROL = parse_label_config(DATA.label_config()).controls[0]


def test_a_job_s_state_head_serves_with_the_states_it_was_fitted_on(engine):
    service = LabelingService(engine)
    texts, gold = list(DATA.texts[:40]), np.array(DATA.gold[:40])
    search = ControlSearch(service, CONTROL, texts, gold, ControlRecipe(), folds=5, shots=4, alpha=0.05,
                           deadline=time.monotonic() + 600)
    states = search.job.current_states
    assert states.shape == (40, engine._llm.n_embd()) and np.isfinite(states).all()
    search.first_stage()
    results = {r.name: r for r in search.job.results}
    alone = results["head-state"]
    head = alone.recipe.head
    assert head.reads_state and head.weight_llm == 0.0 and alone.recipe.prompt == ControlRecipe().prompt
    assert "current+head-state-stacked" in results
    np.testing.assert_allclose(head.state_mean, states.mean(axis=0), rtol=1e-5, atol=1e-5)

    new = list(DATA.texts[40:])
    served = np.array([p.probabilities for p, _ in service.predict_control(CONTROL, alone.recipe, new)])
    scored = service.score_texts(CONTROL, alone.recipe.prompt, new, states=True)
    by_hand = head.combine(np.full((len(new), len(CONTROL.labels)), 0.5), service.embedder.encode(new),
                           np.stack([s.state for s in scored]))
    np.testing.assert_allclose(served, by_hand, atol=1e-6)  # the LLM's answer does not enter: weight 0
