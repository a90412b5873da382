"""What the editor answered under an instruction the annotator typed, per task, control and
instruction: {"answer": [labels], "probability": p}. The annotation submitted later carries the
instruction but not what the model made of it; the webhook reads the answer back here and stores
it, with whether the annotator then chose it, on the ground-truth item (GoldItem.instruction_effect).
Kept a day per task, like the spans proposed (store/proposals.py): an editing session, not a history.
"""
from __future__ import annotations

import hashlib
import json

import redis

from .redis import key

TTL_SECONDS = 24 * 3600


def _field(control: str, instruction: str) -> str:
    """One hash field per control and instruction: typing another instruction and asking again
    keeps each one's answer, and the annotation is matched to the one it was submitted with."""
    return f"{hashlib.sha1(instruction.encode()).hexdigest()[:16]}:{control}"


class InstructedAnswers:
    def __init__(self, conn: redis.Redis):
        self.conn = conn

    def _key(self, project: int, task: int) -> str:
        return key("project", project, "task", task, "instructed")

    def remember(self, project: int, task: int, instruction: str, answers: dict[str, dict]) -> None:
        """`answers`: control name → {"answer": [labels], "probability": p} (the newest per
        control and instruction wins: it is what the annotator saw last)."""
        if not instruction or not answers:
            return
        pipe = self.conn.pipeline(transaction=False)
        pipe.hset(self._key(project, task), mapping={
            _field(name, instruction): json.dumps({"answer": list(a["answer"]), "probability": float(a["probability"])},
                                                  ensure_ascii=False)
            for name, a in answers.items()})
        pipe.expire(self._key(project, task), TTL_SECONDS)
        pipe.execute()

    def recall(self, project: int, task: int, instruction: str, controls: list[str]) -> dict[str, dict]:
        """The answers remembered for these controls of the task under this instruction."""
        if not instruction or not controls:
            return {}
        raw = self.conn.hmget(self._key(project, task), [_field(c, instruction) for c in controls])
        return {c: json.loads(v) for c, v in zip(controls, raw) if v is not None}
