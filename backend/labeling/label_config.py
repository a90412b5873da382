"""Label Studio XML config → the classification tasks this backend can serve.

Parsing goes through label-studio-sdk's LabelInterface (the same parser Label Studio uses), so we
accept exactly what Label Studio accepts. Controls we cannot serve (images, audio, ...) are
skipped and named, never silently dropped. A `<Rating>` is served as a single choice over its stars
("1" … "maxRating"): the model scores each star like a label. A `<Taxonomy>` is a single choice over
its selectable paths ("Europe / France"): the engine scores a whole path as one continuation, so its
probability is the product of its tokens' along the path, every level given the ones above.
A `<Labels>` on a `<Text>` is served as entity spans (labeling/spans.py): the model marks
substrings of the text and each gets one of the control's labels.
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import BadRequest, LabelConfigError

log = logging.getLogger(__name__)

TEXT_OBJECT_TAGS = {"text", "hypertext"}
SERVED_TAGS = {"choices", "rating", "taxonomy", "labels"}
PATH_SEPARATOR = " / "  # how the prompt writes a taxonomy path (Label Studio's default separator)
MAX_TAXONOMY_PATHS = 500  # every path is scored for every task
DEFAULT_MAX_RATING = 5  # Label Studio's default for <Rating>
MAX_RATING = 26  # one letter code per star on a next-token-only server


@dataclass(frozen=True)
class ChoiceControl:
    """One <Choices> control bound to one text object; `field` is the task data key ($field)."""

    name: str
    to_name: str
    field: str
    labels: tuple[str, ...]
    multiple: bool
    kind: str = "choices"  # "rating": a <Rating>, its labels the stars "1".."maxRating"; or "taxonomy"
    # taxonomy: per label, the path Label Studio stores (each node's alias or value, root first)
    paths: tuple[tuple[str, ...], ...] = ()


@dataclass(frozen=True)
class SpanControl:
    """One <Labels> control on one text object: entity spans of the text, each with one label."""

    name: str
    to_name: str
    field: str
    labels: tuple[str, ...]


@dataclass(frozen=True)
class SkippedControl:
    name: str
    tag: str
    reason: str


@dataclass(frozen=True)
class TextAreaTarget:
    """A <TextArea> on a <Text>: where the rationale of a version that reasons first is written,
    or, named as in INSTRUCTION_AREA_NAMES, where the annotator types an instruction."""

    name: str
    to_name: str


# A <TextArea> with one of these names (any case) holds the annotator's instruction for the task
# in front of them (interactive pre-annotation), the convention of Label Studio's LLM examples.
INSTRUCTION_AREA_NAMES = ("prompt", "instruction", "instructions")


@dataclass(frozen=True)
class LabelTask:
    """What a config serves. `config_hash` names its version lineage (lineage_hash);
    `legacy_hash` is the raw-XML hash lineages were named by before, so that the version registry
    can keep serving versions stored under it (store/versions.py)."""

    controls: tuple[ChoiceControl, ...]
    skipped: tuple[SkippedControl, ...]
    config_hash: str
    text_areas: tuple[TextAreaTarget, ...] = ()
    span_controls: tuple[SpanControl, ...] = ()
    instruction_area: TextAreaTarget | None = None
    legacy_hash: str = ""

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys([c.field for c in self.controls] + [c.field for c in self.span_controls]))

    def skipped_messages(self) -> list[str]:
        return [f"control {s.name!r} ({s.tag}) skipped: {s.reason}" for s in self.skipped]


def config_hash(label_config: str) -> str:
    """The version lineage of a config (see lineage_hash); a LabelConfigError when it is invalid."""
    return parse_label_config(label_config).config_hash


def legacy_config_hash(label_config: str) -> str:
    """The hash of the raw XML, which named lineages before lineage_hash did: any edit changed it."""
    return hashlib.sha256(label_config.strip().encode("utf-8")).hexdigest()[:12]


def lineage_hash(controls: Sequence[ChoiceControl], spans: Sequence[SpanControl],
                 text_areas: Sequence[TextAreaTarget], instruction_area: TextAreaTarget | None) -> str:
    """The hash of what a version's recipes depend on, so that a cosmetic edit of the config
    (header, style, layout, hint, color, whitespace, comment, attribute order) keeps its versions.

    Per control: kind, name, bound object and $field (recipes are keyed by control name and read
    that field); labels in order (calibration biases and head weights are indexed by label
    position); single or multiple choice (another scoring rule and calibrator); a taxonomy's
    stored paths (what a prediction writes and how gold is read). Text areas: their role
    (instruction or rationale), name and bound object. Each field is named here rather than taken
    from the dataclasses, so a field added to them later does not reset every lineage. Controls
    are sorted: their place in the layout changes nothing served."""
    entries = [{"kind": c.kind, "name": c.name, "to_name": c.to_name, "field": c.field, "labels": list(c.labels),
                "multiple": c.multiple, "paths": [list(p) for p in c.paths]} for c in controls]
    entries += [{"kind": "labels", "name": c.name, "to_name": c.to_name, "field": c.field, "labels": list(c.labels)}
                for c in spans]
    entries += [{"kind": "rationale", "name": t.name, "to_name": t.to_name} for t in text_areas]
    if instruction_area is not None:
        entries.append({"kind": "instruction", "name": instruction_area.name, "to_name": instruction_area.to_name})
    canonical = sorted(json.dumps(e, sort_keys=True, ensure_ascii=False) for e in entries)
    return hashlib.sha256("\n".join(canonical).encode("utf-8")).hexdigest()[:12]


def lone_surrogate_at(text: str) -> int | None:
    """Where `text` holds a lone surrogate ('\\ud800'-'\\udfff'), or None when it is valid Unicode.

    JSON may carry one as an escape and Python keeps it, but it has no UTF-8 encoding: Redis,
    hashing and the tokenizer would fail on it later, as a 500. Callers reject it up front."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None


def valid_unicode(text: str, field: str) -> str:
    """`text` itself, or a BadRequest naming `field` when it holds a lone surrogate."""
    bad = lone_surrogate_at(text)
    if bad is not None:
        raise BadRequest(f"`{field}` is not valid Unicode: a lone surrogate at character {bad}", field=field)
    return text


def parse_label_config(label_config: str) -> LabelTask:
    """Parse and validate a config; raises LabelConfigError (→ HTTP 400) with the parser's message.

    Any input gives a LabelTask or a LabelConfigError, never another exception: the type and the
    encoding are checked here, before the cache (an unhashable value would fail inside it)."""
    if not isinstance(label_config, str):
        raise LabelConfigError(f"label config must be a string, got {type(label_config).__name__}",
                               field="label_config")
    if not label_config.strip():
        raise LabelConfigError("label config is empty", field="label_config")
    bad = lone_surrogate_at(label_config)
    if bad is not None:
        raise LabelConfigError(f"label config is not valid Unicode: a lone surrogate at character {bad}",
                               field="label_config")
    return _parse(label_config)


@functools.lru_cache(maxsize=128)
def _parse(label_config: str) -> LabelTask:
    from label_studio_sdk.label_interface import LabelInterface

    try:
        interface = LabelInterface(label_config)
        interface.validate()
    except Exception as exc:  # the SDK raises lxml, jsonschema and its own errors
        raise LabelConfigError(f"invalid label config: {exc}", field="label_config") from exc

    controls: list[ChoiceControl] = []
    spans: list[SpanControl] = []
    skipped: list[SkippedControl] = []
    text_areas: list[TextAreaTarget] = []
    instruction_area: TextAreaTarget | None = None
    objects = {obj.name: obj for obj in interface.objects}
    controls_by_name = {c.name: c.tag for c in interface.controls}
    for control in interface.controls:
        tag = control.tag
        bound = (control.to_name or [""])[0]
        if tag.lower() == "textarea" and bound in objects and objects[bound].tag.lower() in TEXT_OBJECT_TAGS:
            if control.name.lower() in INSTRUCTION_AREA_NAMES and instruction_area is None:
                instruction_area = TextAreaTarget(control.name, bound)
            else:
                text_areas.append(TextAreaTarget(control.name, bound))
            continue
        if tag.lower() not in SERVED_TAGS:
            skipped.append(SkippedControl(control.name, tag, "only <Choices>, <Rating>, <Taxonomy> and <Labels> controls are predicted"))
            continue
        to_name = (control.to_name or [""])[0]
        if to_name not in objects and to_name in controls_by_name:  # the SDK validates that the name exists, not its kind
            raise LabelConfigError(
                f"control {control.name!r} ({tag}) has toName={to_name!r}, which names a control "
                f"({controls_by_name[to_name]}), not an object tag such as <Text>", field="label_config")
        obj = objects.get(to_name) if to_name else None
        if obj is None or obj.tag.lower() not in TEXT_OBJECT_TAGS:
            kind = obj.tag if obj is not None else "nothing"
            skipped.append(SkippedControl(control.name, tag, f"bound to {kind}, not to a <Text> object"))
            continue
        if not obj.value_is_variable:
            skipped.append(SkippedControl(control.name, tag, f"object {to_name!r} has no $field value"))
            continue
        if tag.lower() == "rating":
            stars = _stars(control.attr.get("maxRating"))
            if stars is None:
                skipped.append(SkippedControl(control.name, tag, f"maxRating={str(control.attr.get('maxRating'))[:20]!r}"
                                              f" is not a whole number from 2 to {MAX_RATING}"))
                continue
            controls.append(ChoiceControl(name=control.name, to_name=to_name, field=obj.value_name,
                                          labels=stars, multiple=False, kind="rating"))
            continue
        if tag.lower() == "labels":
            labels = tuple(dict.fromkeys(str(label) for label in (control.labels or [])))
            if not labels:
                skipped.append(SkippedControl(control.name, tag, "needs at least one <Label> value"))
                continue
            spans.append(SpanControl(name=control.name, to_name=to_name, field=obj.value_name, labels=labels))
            continue
        if tag.lower() == "taxonomy":
            try:
                shown, stored = taxonomy_paths(label_config, control.name, control.attr.get("leafsOnly"))
            except Exception as exc:  # the SDK's parser accepted what the standard one may read otherwise
                skipped.append(SkippedControl(control.name, tag, f"its <Choice> tree could not be read ({exc})"))
                continue
            if not 2 <= len(shown) <= MAX_TAXONOMY_PATHS or len(set(shown)) < len(shown):
                skipped.append(SkippedControl(control.name, tag, f"{len(shown)} selectable paths, or two that read "
                                              f"alike; from 2 to {MAX_TAXONOMY_PATHS} distinct paths are served"))
                continue
            controls.append(ChoiceControl(name=control.name, to_name=to_name, field=obj.value_name, labels=shown,
                                          multiple=False, kind="taxonomy", paths=stored))
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
    if not controls and not spans:
        reasons = "; ".join([f"{s.name}: {s.reason}" for s in skipped]
                            + [f"{t.name}: a <TextArea> only receives rationales" for t in text_areas]) or "no control tags"
        raise LabelConfigError(
            f"label config has no <Choices>, <Rating>, <Taxonomy> or <Labels> control bound to a <Text> object ({reasons})",
            field="label_config",
        )
    for s in skipped:
        log.warning("label config: control %r (%s) skipped: %s", s.name, s.tag, s.reason)
    return LabelTask(controls=tuple(controls), skipped=tuple(skipped),
                     config_hash=lineage_hash(controls, spans, text_areas, instruction_area),
                     text_areas=tuple(text_areas), span_controls=tuple(spans), instruction_area=instruction_area,
                     legacy_hash=legacy_config_hash(label_config))


def _stars(max_rating: object) -> tuple[str, ...] | None:
    """The labels of a <Rating>: "1" … maxRating (Label Studio's default 5); None when it cannot be served."""
    text = str(DEFAULT_MAX_RATING if max_rating is None else max_rating).strip()
    if not (text.isascii() and text.isdigit()) or not 2 <= int(text) <= MAX_RATING:
        return None
    return tuple(str(i) for i in range(1, int(text) + 1))


def taxonomy_paths(label_config: str, name: str, leafs_only: object) -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]:
    """The selectable paths of the <Taxonomy> named `name`: as the prompt shows them (values joined
    by PATH_SEPARATOR) and as Label Studio stores them (alias or value per node). With leafsOnly
    only the leaves are selectable, as in Label Studio's editor; otherwise every node is."""
    from xml.etree import ElementTree

    root = ElementTree.fromstring(label_config)  # Label Studio's parser has accepted it already
    node = next(e for e in root.iter() if isinstance(e.tag, str) and e.tag.lower() == "taxonomy" and e.get("name") == name)
    leaves = str(leafs_only).strip().lower() == "true"
    shown: list[str] = []
    stored: list[tuple[str, ...]] = []

    def walk(parent, values: tuple[str, ...], keys: tuple[str, ...]) -> None:
        for child in parent:
            if not (isinstance(child.tag, str) and child.tag.lower() == "choice") or child.get("value") is None:
                continue
            here, key = values + (child.get("value"),), keys + (child.get("alias") or child.get("value"),)
            has_children = any(isinstance(c.tag, str) and c.tag.lower() == "choice" for c in child)
            if not (leaves and has_children):
                shown.append(PATH_SEPARATOR.join(here))
                stored.append(key)
            walk(child, here, key)

    walk(node, (), ())
    return tuple(shown), tuple(stored)
