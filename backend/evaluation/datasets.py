"""Labelled JSONL sets → items and a Choices config; labels.json beside the file fixes the label order.

A row is single-label ({"text", "label": "..."}) or multi-label ({"text", "labels": [...]}); a file
whose rows carry `labels` lists and no `label` string is a multi-label set (choice="multiple").
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np

from ..errors import DatasetError


@dataclass(frozen=True)
class Dataset:
    name: str
    labels: tuple[str, ...]
    texts: tuple[str, ...]
    gold: tuple[int, ...]  # single-label: one label index per item (empty for a multi-label set)
    label_sets: tuple[tuple[int, ...], ...] | None = None  # multi-label: label indices per item

    @property
    def multiple(self) -> bool:
        return self.label_sets is not None

    def gold_matrix(self) -> np.ndarray:
        """Multi-label gold as an items × labels 0/1 matrix."""
        out = np.zeros((len(self.texts), len(self.labels)), dtype=np.int8)
        for row, labels in zip(out, self.label_sets or ()):
            row[list(labels)] = 1
        return out

    def label_config(self, control: str = "label") -> str:
        choices = "".join(f"<Choice value={quoteattr(label)}/>" for label in self.labels)
        kind = "multiple" if self.multiple else "single"
        return (
            f'<View><Text name="text" value="$text"/>'
            f'<Choices name="{control}" toName="text" choice="{kind}">{choices}</Choices></View>'
        )


def _is_multi_label(rows: list[dict]) -> bool:
    return not any(isinstance(r.get("label"), str) for r in rows) and any(isinstance(r.get("labels"), list) for r in rows)


def load_dataset(path: str | Path, *, limit: int | None = None, labels_file: str | Path | None = None,
                 seed: int | None = None) -> Dataset:
    """Read a labelled JSONL; labels come from labels.json next to it (fixed order) or the data.
    `seed` shuffles the rows before `limit` (None: file order): another draw of the same set."""
    path = Path(path)
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    multi = _is_multi_label(rows)
    if multi:
        rows = [r for r in rows if isinstance(r.get("labels"), list) and r["labels"]]
    else:
        rows = [r for r in rows if isinstance(r.get("label"), str)]
    if not rows:
        raise DatasetError(f'{path}: no row has a "label" string or a "labels" list '
                           "(span annotations such as NER are not served)")
    if seed is not None:
        random.Random(seed).shuffle(rows)
    if limit:
        rows = rows[:limit]
    used = {label for r in rows for label in (r["labels"] if multi else [r["label"]])}
    labels_path = Path(labels_file) if labels_file else path.parent / "labels.json"
    if labels_path.is_file():
        labels = tuple(json.loads(labels_path.read_text(encoding="utf-8")))
    else:
        labels = tuple(sorted(used))
    index = {label: i for i, label in enumerate(labels)}
    unknown = used - set(index)
    if unknown:
        raise DatasetError(f"{path}: labels not in {labels_path.name}: {sorted(unknown)[:5]}")
    name = path.parent.name or path.stem
    texts = tuple(r["text"] for r in rows)
    if multi:
        sets = tuple(tuple(sorted({index[label] for label in r["labels"]})) for r in rows)
        return Dataset(name=name, labels=labels, texts=texts, gold=(), label_sets=sets)
    return Dataset(name=name, labels=labels, texts=texts, gold=tuple(index[r["label"]] for r in rows))
