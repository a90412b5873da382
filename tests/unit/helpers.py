"""Test doubles shared by the unit tests of several modules: a clock the test moves, a labeling
service that records what it scored, the instruction rewrite's scripted engine, teacher and
embedder, and a two-label sentiment control."""
import re

import numpy as np

from backend.engines.scripted import ScriptedEngine
from backend.errors import UpstreamUnavailable
from backend.labeling.calibration import Calibrator
from backend.labeling.label_config import parse_label_config
from backend.labeling.service import Scored
from backend.refinement.candidates.teacher import sanitize_all


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class RecordingService:
    """Scores a text by whether the prompt shows a demo with that text and label (a fake LLM that
    copies its demonstrations), and records which prompt scored which text."""

    def __init__(self, labels):
        self.labels, self.calls = labels, []

    def task_demos(self, prompt, texts, embeddings=None, *, leave_out_self=False):
        return [() for _ in texts]

    def cached(self, control, prompt, texts, task_demos):
        return np.zeros(len(texts), bool)

    def gives_state(self, control, prompt):
        return False

    def score_texts(self, control, prompt, texts, task_demos=None, states=False):
        out = []
        for text in texts:
            self.calls.append((prompt.demos, text))
            logits = np.zeros(len(self.labels))
            for demo in prompt.demos:
                if demo.text == text:
                    for label in demo.labels:
                        logits[self.labels.index(label)] += 5.0
            out.append(Scored(logits, False))
        return out

    def calibrator(self, control, prompt):
        return Calibrator.identity(len(self.labels))


# The instruction rewrite's scripted parts (its own tests and the optimizer's).
GOOD = "When a text mentions lunch, lunch means ham; otherwise say spam."
MEH = "When a text mentions prize, prize means spam; otherwise say ham."
LABELS = ("spam", "ham")


class RuleFollowingEngine(ScriptedEngine):
    """The scripted engine plus instructions that matter: a rule "<word> means <label>" in the
    prompt's instructions adds 3 to <label>'s score for texts containing <word>, so a scripted
    teacher can propose better and worse instructions and a search must tell them apart."""

    def score(self, prefix, item, branches):
        out = super().score(prefix, item, branches)
        words = item.lower().split()
        for (word, label) in re.findall(r"(\w+) means (\w+)", prefix):
            for values, branch in zip(out, branches):
                for j, cont in enumerate(branch.continuations):
                    if cont.strip() == label and word in words:
                        values[j] += 3.0
        return out


class ScriptedTeacher:
    """Replays raw proposals round by round through the real sanitiser; records what it was shown."""

    name = "scripted"

    def __init__(self, rounds, fail=False):
        self.rounds, self.fail, self.briefs, self.calls = list(rounds), fail, [], 0

    def propose(self, brief, n, *, seed=0):
        self.briefs.append(brief)
        self.calls += n
        if self.fail:
            raise UpstreamUnavailable("teacher: cannot reach the LLM server")
        raws = self.rounds.pop(0) if self.rounds else []
        return sanitize_all(raws, exclude=[brief.instructions], limit=n)


class WordEmbedder:
    """One-hot words: enough for the head candidate in a pure-logic test."""

    VOCAB = ("prize", "lunch", "win", "today")

    def encode(self, texts):
        v = np.array([[float(w in t.lower().split()) for w in self.VOCAB] + [1.0] for t in texts])
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def data(n=80):
    texts = [f"win a prize number {i} today" if i % 2 == 0 else f"see you at lunch number {i}" for i in range(n)]
    return texts, np.array([i % 2 for i in range(n)])  # 0 spam, 1 ham


SENTIMENT_CONFIG = """<View><Text name="text" value="$text"/>
<Choices name="sentiment" toName="text"><Choice value="good"/><Choice value="bad"/></Choices></View>"""


def sentiment_control():
    return parse_label_config(SENTIMENT_CONFIG).controls[0]
