"""Hypothesis strategies for hostile input: any JSON value (with NaN, ±inf, huge and negative
integers, booleans, lone surrogates and non-ASCII digits), and Label Studio bodies from the
captured fixtures with a few values replaced by such JSON at random paths.

Shared by the unit property tests (payloads, label config, prediction) and the HTTP ones, so both
throw the same kinds of bad values at the code."""
from __future__ import annotations

import copy
import json
import re

from hypothesis import strategies as st

PROPERTY_SETTINGS = {"max_examples": 200, "deadline": None}

# every code point including lone surrogates (which st.text() leaves out by default), with the
# surrogate range, non-ASCII digits and JSON-ish punctuation drawn often enough to matter
characters = st.one_of(
    st.characters(exclude_categories=()),
    st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
    st.characters(categories=["Nd"]),
    st.sampled_from("0123456789.-<>\"'&$ "),
)
texts = st.text(characters, max_size=12)

numbers = st.one_of(
    st.integers(min_value=-(2**64), max_value=2**64),
    st.integers(min_value=10**13, max_value=10**15),  # around the id bound
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, -1, 1.0, 1.5, float("nan"), float("inf"), -float("inf"), 10**30, 2**63]),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, texts)

json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(texts, st.sampled_from(["id", "data", "text", "value", "choices"])),
                        children, max_size=4),
    ),
    max_leaves=12,
)



def mostly(good, bad=json_values):
    """`good` about eight times in nine, else `bad` (any JSON), so that most examples get deep into
    the code under test (st.one_of(good, ..., bad) draws `bad` far more often than its share)."""
    return st.integers(0, 8).flatmap(lambda i: bad if i == 4 else good)


ids = st.one_of(st.integers(min_value=1, max_value=10**6), numbers, st.booleans(), st.none(), texts)


def paths(value, prefix=()):
    """Every path (tuple of keys and indices) inside a JSON value, the root's children first."""
    out = []
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return out
    for k, child in items:
        out.append(prefix + (k,))
        out.extend(paths(child, prefix + (k,)))
    return out


def _set(body, path, new):
    target = body
    for k in path[:-1]:
        target = target[k]
    target[path[-1]] = new


@st.composite
def mutated(draw, fixture: dict, *, focus: tuple = (), values=json_values, max_changes: int = 3):
    """`fixture` (a deep copy) with 1..max_changes values replaced by `values`, each at a path drawn
    from the current body (so a change can land inside an earlier one); about half of the paths
    start with one of the `focus` prefixes (the keys the code reads, not the dozens it ignores)."""
    body = copy.deepcopy(fixture)
    for _ in range(draw(st.integers(min_value=1, max_value=max_changes))):
        where = paths(body)
        focused = [p for p in where if any(p[:len(f)] == f for f in focus)]
        if focused and draw(st.booleans()):
            where = focused
        if not where:
            break
        _set(body, draw(st.sampled_from(where)), draw(values))
    return body


# A string that `dumps` turns into lists nested that deep (json.dumps itself would recurse too far).
deep = st.integers(min_value=1, max_value=5000).map(lambda n: f"<<nested {n}>>")


def dumps(body) -> str:
    """JSON text as Label Studio's client would send it (ASCII escapes, so a lone surrogate travels
    as '\\ud800'; NaN and Infinity as Python writes them), with each `deep` marker expanded."""
    text = json.dumps(body)
    return re.sub(r'"<<nested (\d+)>>"', lambda m: "[" * int(m.group(1)) + "]" * int(m.group(1)), text)


# label configs built from Label Studio's own tags, with names that may or may not resolve (to an
# object, to a control, to nothing) and values that may or may not be $fields; one value in nine
# is any printable text instead


_xml_texts = st.text(st.characters(categories=["L", "N", "P", "S", "Zs"]), max_size=8)  # no control characters


def _mostly(pool: list[str]):
    return mostly(st.sampled_from(pool), _xml_texts)


def _rarely():
    return st.integers(0, 8).map(lambda i: i == 4)


NAMES = _mostly(["text", "text", "a", "b", "img", "", "text,a"])
OBJECT_TAGS = st.sampled_from(["Text", "Text", "Text", "HyperText", "Image", "Header", "Bogus"])
CONTROL_TAGS = st.sampled_from(["Choices", "Choices", "Choices", "Labels", "TextArea", "Bogus"])
FIELDS = _mostly(["$text", "$text", "$a", "$", "text"])
LABELS = _mostly(["x", "y", "z", "x", ""])
CHOICE = st.sampled_from(["single", "multiple", "single-radio", "odd"])


def _attr(name: str, value: str) -> str:
    return f'{name}="{value.replace("&", "&amp;").replace("<", "&lt;").replace(chr(34), "&quot;")}"'


@st.composite
def _object(draw) -> str:
    return f"<{draw(OBJECT_TAGS)} {_attr('name', draw(NAMES))} {_attr('value', draw(FIELDS))}/>"


@st.composite
def _control(draw) -> str:
    attrs = " ".join(_attr(name, draw(values)) for name, values in
                     (("name", NAMES), ("toName", NAMES), ("choice", CHOICE)) if not draw(_rarely()))
    options = "".join("<Choice/>" if v is None else f"<Choice {_attr('value', v)}/>"
                      for v in draw(st.lists(st.none() | LABELS, max_size=4)))
    tag = draw(CONTROL_TAGS)
    return f"<{tag} {attrs}>{options}</{tag}>"


@st.composite
def label_configs(draw) -> str:
    """A <View> of objects and controls in any order (some in a nested <View>), sometimes cut
    short or with any text spliced in (XML errors)."""
    parts = draw(st.lists(_object() | _control(), max_size=4))
    if draw(st.booleans()):  # half of them around a config that works, so the parse gets past the SDK
        parts[draw(st.integers(0, len(parts))):0] = [
            '<Text name="text" value="$text"/>', '<Choices name="c" toName="text"><Choice value="x"/><Choice value="y"/></Choices>']
    if parts and draw(st.booleans()):
        k = draw(st.integers(0, len(parts)))
        parts = parts[:k] + [f"<View>{''.join(parts[k:])}</View>"]
    config = f"<View>{''.join(parts)}</View>"
    if draw(_rarely()):
        config = config[: draw(st.integers(0, len(config)))]
    if draw(_rarely()):
        at = draw(st.integers(0, len(config)))
        config = config[:at] + draw(texts) + config[at:]
    return config
