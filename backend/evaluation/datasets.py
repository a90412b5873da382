"""Labelled JSONL sets ({"text", "label"} per line, labels.json beside) → items and a Choices config."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import quoteattr


@dataclass(frozen=True)
class Dataset:
    name: str
    labels: tuple[str, ...]
    texts: tuple[str, ...]
    gold: tuple[int, ...]

    def label_config(self, control: str = "label") -> str:
        choices = "".join(f"<Choice value={quoteattr(label)}/>" for label in self.labels)
        return (
            f'<View><Text name="text" value="$text"/>'
            f'<Choices name="{control}" toName="text" choice="single">{choices}</Choices></View>'
        )


def load_dataset(path: str | Path, *, limit: int | None = None, labels_file: str | Path | None = None) -> Dataset:
    """Read a single-label JSONL; labels come from labels.json next to it (fixed order) or the data."""
    path = Path(path)
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = [r for r in rows if isinstance(r.get("label"), str)]
    if limit:
        rows = rows[:limit]
    labels_path = Path(labels_file) if labels_file else path.parent / "labels.json"
    if labels_path.is_file():
        labels = tuple(json.loads(labels_path.read_text(encoding="utf-8")))
    else:
        labels = tuple(sorted({r["label"] for r in rows}))
    index = {label: i for i, label in enumerate(labels)}
    unknown = {r["label"] for r in rows} - set(index)
    if unknown:
        raise ValueError(f"{path}: labels not in {labels_path.name}: {sorted(unknown)[:5]}")
    return Dataset(
        name=path.parent.name or path.stem,
        labels=labels,
        texts=tuple(r["text"] for r in rows),
        gold=tuple(index[r["label"]] for r in rows),
    )
