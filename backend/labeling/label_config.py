"""Label Studio XML config → the classification tasks this backend can serve.

Parsing goes through label-studio-sdk's LabelInterface (the same parser Label Studio uses), so we
accept exactly what Label Studio accepts. Controls we cannot serve (NER spans, images, ...) are
skipped and named, never silently dropped.
"""
from __future__ import annotations

import functools
import hashlib
import logging
from dataclasses import dataclass

from ..errors import LabelConfigError

log = logging.getLogger(__name__)

TEXT_OBJECT_TAGS = {"text", "hypertext"}


@dataclass(frozen=True)
class ChoiceControl:
    """One <Choices> control bound to one text object; `field` is the task data key ($field)."""

    name: str
    to_name: str
    field: str
    labels: tuple[str, ...]
    multiple: bool


@dataclass(frozen=True)
class SkippedControl:
    name: str
    tag: str
    reason: str


@dataclass(frozen=True)
class LabelTask:
    controls: tuple[ChoiceControl, ...]
    skipped: tuple[SkippedControl, ...]
    config_hash: str

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c.field for c in self.controls))

    def skipped_messages(self) -> list[str]:
        return [f"control {s.name!r} ({s.tag}) skipped: {s.reason}" for s in self.skipped]


def config_hash(label_config: str) -> str:
    return hashlib.sha256(label_config.strip().encode("utf-8")).hexdigest()[:12]


@functools.lru_cache(maxsize=128)
def parse_label_config(label_config: str) -> LabelTask:
    """Parse and validate a config; raises LabelConfigError (→ HTTP 400) with the parser's message."""
    if not isinstance(label_config, str) or not label_config.strip():
        raise LabelConfigError("label config is empty", field="label_config")
    from label_studio_sdk.label_interface import LabelInterface

    try:
        interface = LabelInterface(label_config)
        interface.validate()
    except Exception as exc:  # the SDK raises lxml, jsonschema and its own errors
        raise LabelConfigError(f"invalid label config: {exc}", field="label_config") from exc

    controls: list[ChoiceControl] = []
    skipped: list[SkippedControl] = []
    for control in interface.controls:
        tag = control.tag
        if tag.lower() != "choices":
            skipped.append(SkippedControl(control.name, tag, "only <Choices> controls are predicted"))
            continue
        to_name = (control.to_name or [""])[0]
        obj = interface.get_object(to_name) if to_name else None
        if obj is None or obj.tag.lower() not in TEXT_OBJECT_TAGS:
            kind = obj.tag if obj is not None else "nothing"
            skipped.append(SkippedControl(control.name, tag, f"bound to {kind}, not to a <Text> object"))
            continue
        if not obj.value_is_variable:
            skipped.append(SkippedControl(control.name, tag, f"object {to_name!r} has no $field value"))
            continue
        labels = tuple(dict.fromkeys(str(label) for label in (control.labels or [])))
        if len(labels) < (1 if control.is_multiple_choice else 2):
            skipped.append(SkippedControl(control.name, tag, "needs at least two <Choice> values"))
            continue
        controls.append(
            ChoiceControl(
                name=control.name,
                to_name=to_name,
                field=obj.value_name,
                labels=labels,
                multiple=control.is_multiple_choice,
            )
        )
    if not controls:
        reasons = "; ".join(f"{s.name}: {s.reason}" for s in skipped) or "no control tags"
        raise LabelConfigError(
            f"label config has no <Choices> control bound to a <Text> object ({reasons})",
            field="label_config",
        )
    for s in skipped:
        log.warning("label config: control %r (%s) skipped: %s", s.name, s.tag, s.reason)
    return LabelTask(controls=tuple(controls), skipped=tuple(skipped), config_hash=config_hash(label_config))
