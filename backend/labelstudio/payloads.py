"""Label Studio payloads → plain values: an annotation → a gold item, a list of objects → ids.

Used by the webhook (events as they happen) and by reconciliation (tasks read back through the
LS API), so both read an annotation the same way; errors name the offending field. Every value
is type-checked before use: a wrong JSON type is a BadRequest naming its path, never a 500, and
nothing that could not be stored (a lone surrogate) or deleted again (a huge id) gets through.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import BadRequest, PayloadTooLarge
from ..labeling.label_config import LabelTask, valid_unicode
from ..labeling.prompt import clean_text
from ..labeling.spans import shown_spans
from ..store.ground_truth import GoldItem

# Label Studio's ids are positive database keys (32-bit in 1.23). The ground-truth store's Lua
# scripts print ids with Lua's 14 significant digits, so an annotation id of 10**14 or more could
# be stored but never deleted again; the bound keeps every id exact there.
MAX_ID = 10**14 - 1
MAX_IDS_PER_EVENT = 100_000
# A stored ground-truth text is cut here: the model reads at most MAX_TEXT_CHARS of it anyway, and
# Redis should not hold megabytes per task because a body could carry them.
MAX_GOLD_TEXT_CHARS = 100_000


def short_repr(value: object) -> str:
    """A value for an error message: its repr, cut short (a body may hold megabytes)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def label_studio_id(value: object, field: str) -> int:
    """A Label Studio object id: a JSON integer in 1..MAX_ID. Booleans (an int subclass in
    Python), floats (NaN, Infinity, 1e400, 1.5) and strings are refused, not coerced."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"`{field}` must be an integer id, got {short_repr(value)}", field=field)
    if not 1 <= value <= MAX_ID:
        raise BadRequest(f"`{field}` must be an id between 1 and {MAX_ID}, got {short_repr(value)}", field=field)
    return value


def _storable(value: object, field: str) -> str | None:
    """A string that Redis can hold (valid Unicode), or None when absent; anything else is refused."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequest(f"`{field}` must be a string, got {type(value).__name__}", field=field)
    return valid_unicode(value, field)


def _chosen_labels(label_task: LabelTask, result: object, where: str) -> dict[str, list[str]]:
    """Control name → the chosen labels the config knows, from an annotation's `result` regions.

    Regions of other controls (spans, text areas, relations without `from_name`) are skipped
    unread; a region of one of our controls must be shaped like Label Studio's choices (or rating)
    region. A star outside the control's range is not a label the config knows, like an unknown choice."""
    if result is None:
        return {}
    if not isinstance(result, list):
        raise BadRequest(f"`{where}` must be a list of regions, got {type(result).__name__}", field=where)
    allowed = {c.name: c.labels for c in label_task.controls}
    ratings = {c.name for c in label_task.controls if c.kind == "rating"}
    taxonomies = {c.name: dict(zip(c.paths, c.labels)) for c in label_task.controls if c.kind == "taxonomy"}
    labels: dict[str, list[str]] = {}
    for i, region in enumerate(result):
        at = f"{where}[{i}]"
        if not isinstance(region, dict):
            raise BadRequest(f"`{at}` must be an object, got {type(region).__name__}", field=at)
        name = region.get("from_name")
        if name is None:
            continue
        if not isinstance(name, str):
            raise BadRequest(f"`{at}.from_name` must be a string, got {type(name).__name__}", field=f"{at}.from_name")
        if name not in allowed:
            continue
        value = region.get("value")
        if not isinstance(value, dict):
            raise BadRequest(f"`{at}.value` must be an object, got {type(value).__name__}", field=f"{at}.value")
        if name in ratings:
            star = _star(value.get("rating"), f"{at}.value.rating")
            if star in allowed[name]:
                labels[name] = [star]
            continue
        if name in taxonomies:
            kept = list(dict.fromkeys(taxonomies[name][path] for path in _paths(value.get("taxonomy"), f"{at}.value.taxonomy")
                                      if path in taxonomies[name]))
            if kept:
                labels[name] = kept
            continue
        choices = value.get("choices")
        if not isinstance(choices, list):
            raise BadRequest(f"`{at}.value.choices` must be a list of strings, got {type(choices).__name__}",
                             field=f"{at}.value.choices")
        for j, choice in enumerate(choices):
            if not isinstance(choice, str):
                raise BadRequest(f"`{at}.value.choices[{j}]` must be a string, got {type(choice).__name__}",
                                 field=f"{at}.value.choices[{j}]")
        kept = list(dict.fromkeys(c for c in choices if c in allowed[name]))
        if kept:
            labels[name] = kept
    return labels


def _raw_spans(label_task: LabelTask, result: object, where: str) -> dict[str, list[tuple[int, int, str]]]:
    """<Labels> control name → its spans (start, end, first label the config knows) in an
    annotation's `result`; every span control of the config is present (empty: no entity marked).
    A region of a span control must be shaped like Label Studio's `labels` region."""
    out: dict[str, list[tuple[int, int, str]]] = {c.name: [] for c in label_task.span_controls}
    allowed = {c.name: set(c.labels) for c in label_task.span_controls}
    for i, region in enumerate(result if isinstance(result, list) else []):
        at = f"{where}[{i}]"
        if not isinstance(region, dict) or region.get("from_name") not in allowed:
            continue
        value = region.get("value")
        if not isinstance(value, dict):
            raise BadRequest(f"`{at}.value` must be an object, got {type(value).__name__}", field=f"{at}.value")
        bounds = []
        for name in ("start", "end"):
            x = value.get(name)
            if isinstance(x, bool) or not isinstance(x, int) or not 0 <= x <= MAX_GOLD_TEXT_CHARS * 10:
                raise BadRequest(f"`{at}.value.{name}` must be a character offset, got {short_repr(x)}",
                                 field=f"{at}.value.{name}")
            bounds.append(x)
        labels = value.get("labels")
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise BadRequest(f"`{at}.value.labels` must be a list of strings", field=f"{at}.value.labels")
        known = [x for x in labels if x in allowed[region["from_name"]]]
        if known and bounds[0] < bounds[1]:
            out[region["from_name"]].append((bounds[0], bounds[1], known[0]))
    return out


def _star(rating: object, field: str) -> str:
    """A rating region's star as its label ("4"); Label Studio writes a whole number."""
    if isinstance(rating, float) and rating.is_integer():
        rating = int(rating)
    if isinstance(rating, bool) or not isinstance(rating, int):
        raise BadRequest(f"`{field}` must be a whole number, got {type(rating).__name__}", field=field)
    return str(rating) if 0 < rating <= 1000 else ""  # out of any range; str() of a huge int would raise


def _paths(taxonomy: object, field: str) -> list[tuple[str, ...]]:
    """A taxonomy region's selections: each a path of node values, root first."""
    if not isinstance(taxonomy, list):
        raise BadRequest(f"`{field}` must be a list of paths, got {type(taxonomy).__name__}", field=field)
    for i, path in enumerate(taxonomy):
        if not isinstance(path, list) or not all(isinstance(node, str) for node in path):
            raise BadRequest(f"`{field}[{i}]` must be a list of strings", field=f"{field}[{i}]")
    return [tuple(path) for path in taxonomy]


@dataclass(frozen=True)
class EditorContext:
    """What the annotator has set in the editor (an interactive /predict's `params.context.result`):
    controls they answered, per <Labels> control the spans they marked, and per choice control
    (<Choices>, <Rating>, <Taxonomy>) the labels they chose, which the other controls are then
    scored with as evidence (LabelingService.predict)."""

    answered: frozenset[str] = frozenset()
    marked: dict = field(default_factory=dict)  # span control name → [(start, end, label)]
    instruction: str = ""  # what the annotator typed in the config's instruction <TextArea>
    choices: dict = field(default_factory=dict)  # choice control name → (chosen labels of that control,)


def editor_context(label_task: LabelTask, body: dict) -> EditorContext | None:
    """The editor's context of an interactive request, or None for a batch one (no context)."""
    params = body.get("params")
    context = params.get("context") if isinstance(params, dict) else None
    if context is None:
        return None
    if not isinstance(context, dict):
        raise BadRequest("`params.context` must be an object", field="params.context")
    result = context.get("result")
    if result is None:
        return None
    if not isinstance(result, list):
        raise BadRequest("`params.context.result` must be a list of regions", field="params.context.result")
    answered = {r.get("from_name") for r in result if isinstance(r, dict) and isinstance(r.get("from_name"), str)}
    marked = {name: spans for name, spans in _raw_spans(label_task, result, "params.context.result").items() if spans}
    choices = {name: tuple(labels) for name, labels in _chosen_labels(label_task, result, "params.context.result").items()}
    return EditorContext(frozenset(answered), marked, typed_instruction(label_task, result, "params.context.result"),
                         choices)


# An instruction is a sentence or a paragraph; more is not an instruction and would crowd the
# task text out of the model's context.
MAX_INSTRUCTION_CHARS = 2000


def typed_instruction(label_task: LabelTask, result: object, where: str) -> str:
    """The text of the config's instruction <TextArea> in an annotation's or the editor's
    `result` (its lines joined, whitespace collapsed), or "" when there is none."""
    area = label_task.instruction_area
    if area is None or not isinstance(result, list):
        return ""
    lines: list[str] = []
    for i, region in enumerate(result):
        if not isinstance(region, dict) or region.get("from_name") != area.name:
            continue
        value = region.get("value")
        text = value.get("text") if isinstance(value, dict) else None
        if isinstance(text, str):
            text = [text]
        if not isinstance(text, list) or not all(isinstance(x, str) for x in text):
            raise BadRequest(f"`{where}[{i}].value.text` must be a list of strings", field=f"{where}[{i}].value.text")
        lines += text
    instruction = clean_text(" ".join(lines))
    if len(instruction) > MAX_INSTRUCTION_CHARS:
        raise BadRequest(f"`{where}`: the instruction in {area.name!r} has {len(instruction)} characters; "
                         f"at most {MAX_INSTRUCTION_CHARS}", field=where)
    _storable(instruction, where)
    return instruction


def annotation_id(annotation: object, where: str = "annotation") -> int:
    """The id of an annotation object (what a cancelled or emptied annotation is deleted by)."""
    if not isinstance(annotation, dict):
        raise BadRequest(f"`{where}` must be an object, got {type(annotation).__name__}", field=where)
    return label_studio_id(annotation.get("id"), f"{where}.id")


def gold_from_annotation(label_task: LabelTask, task: dict, annotation: dict, *,
                         task_at: str = "task", annotation_at: str = "annotation") -> GoldItem | None:
    """The gold item an annotation gives, or None when it carries no usable choice and no spans of
    a <Labels> control (or was cancelled).

    Anything else is a BadRequest whose field is the JSON path (`task_at` / `annotation_at` are
    where the two objects sit in the body: /train nests them), so a caller can validate a whole
    batch before it stores any of it."""
    ann_id = annotation_id(annotation, annotation_at)
    cancelled = annotation.get("was_cancelled")
    if cancelled is not None and not isinstance(cancelled, bool):
        raise BadRequest(f"`{annotation_at}.was_cancelled` must be a boolean", field=f"{annotation_at}.was_cancelled")
    if cancelled:
        return None
    if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
        raise BadRequest("the annotation event needs `task.data`", field=f"{task_at}.data")
    labels = _chosen_labels(label_task, annotation.get("result"), f"{annotation_at}.result")
    raw_spans = _raw_spans(label_task, annotation.get("result"), f"{annotation_at}.result")
    if not labels and not raw_spans:
        return None
    texts, spans = {}, {}
    for control in [*label_task.controls, *label_task.span_controls]:
        if control.name in labels or control.name in raw_spans:
            where = f"{task_at}.data.{control.field}"
            value = task["data"].get(control.field)
            if value is None:
                return None
            if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                raise BadRequest(f"`{where}` must be a string, got {type(value).__name__}", field=where)
            if isinstance(value, str):
                _storable(value, where)
            text = clean_text(value)
            if not text:
                return None
            texts[control.field] = text[:MAX_GOLD_TEXT_CHARS]
            if control.name in raw_spans:  # offsets move into the text as stored; a span cut off drops them all
                kept = shown_spans(str(value), raw_spans[control.name])
                if kept is not None and all(end <= len(texts[control.field]) for _, end, _ in kept):
                    spans[control.name] = [list(x) for x in kept]
    if not labels and not spans:
        return None
    if task.get("id") is not None:
        task_id = label_studio_id(task["id"], f"{task_at}.id")
    else:
        task_id = label_studio_id(annotation.get("task"), f"{annotation_at}.task")
    updated = (_storable(annotation.get("updated_at"), f"{annotation_at}.updated_at")
               or _storable(annotation.get("created_at"), f"{annotation_at}.created_at") or "")
    instruction = typed_instruction(label_task, annotation.get("result"), f"{annotation_at}.result")
    return GoldItem(task_id, texts, labels, ann_id, updated, spans, instruction)


def id_list(body: dict, name: str, action: str, *, bare_ints: bool = False) -> list[int]:
    """Integer ids of the objects listed under `name` (Label Studio sends `[{"id": 1}, ...]`;
    `bare_ints` also takes `[1, ...]`); an error names the offending element. At most
    MAX_IDS_PER_EVENT: more is work no single webhook should start (413)."""
    items = body.get(name)
    if not isinstance(items, list):
        raise BadRequest(f"{action} needs a `{name}` list", field=name)
    if len(items) > MAX_IDS_PER_EVENT:
        raise PayloadTooLarge(f"{action} lists {len(items)} {name}; at most {MAX_IDS_PER_EVENT} per event",
                              field=name)
    ids = []
    for i, item in enumerate(items):
        if isinstance(item, dict):
            ids.append(label_studio_id(item.get("id"), f"{name}[{i}].id"))
        elif bare_ints and isinstance(item, int) and not isinstance(item, bool):
            ids.append(label_studio_id(item, f"{name}[{i}]"))
        else:
            raise BadRequest(f"`{name}[{i}]` must be an object with an integer `id`", field=f"{name}[{i}].id")
    return ids
