"""pydantic's errors → `config: key: problem (fix)` lines, from each error's type and context
only (never its input: that may be a secret). All problems of a file are reported at once
(`ConfigErrors`): fixing one per restart is misery."""

from __future__ import annotations

import difflib
import re
import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from pollerd.config.models import USER_KEYS, Settings
from pollerd.config.types import EXAMPLE
from pollerd.errors import ConfigError

__all__ = [
    "ConfigErrors",
    "in_table_order",
    "is_model",
    "problems_from",
    "unknown_key",
    "user_keys",
]


class ConfigErrors(ConfigError):
    """Every problem of one config, a `config: key: problem (fix)` line each. `field`,
    `problem` and `fix` are the first problem's; `problems` holds them all."""

    def __init__(self, problems: list[ConfigError]) -> None:
        first = problems[0]
        super().__init__(first.field, first.problem, first.fix)
        self.problems = problems
        self.args = ("\n".join(str(problem) for problem in problems),)


def in_table_order(problems: list[ConfigError], section: str) -> list[ConfigError]:
    """`problems` with those of `section`'s tables (`alerts[1].window`) in table order, in the
    places they held; the rest stay put. A table's problems come from several checks (its own
    model, the ones spanning tables, the loader's), each reporting in its own pass: a reader
    fixing the file top to bottom wants `alerts[0]` before `alerts[1]`, whoever found it."""
    index = re.compile(rf"^{re.escape(section)}\[(\d+)\]")
    places = [n for n, p in enumerate(problems) if index.match(p.field)]
    ordered = sorted((problems[n] for n in places), key=lambda p: _index(index, p.field))
    result = list(problems)
    for n, problem in zip(places, ordered, strict=True):
        result[n] = problem
    return result


def _index(pattern: re.Pattern[str], field: str) -> int:
    found = pattern.match(field)
    return int(found.group(1)) if found else -1


_EXPECTED = {
    **dict.fromkeys(("int_type", "int_parsing"), "an integer"),
    **dict.fromkeys(("float_type", "float_parsing"), "a number"),
    **dict.fromkeys(("bool_type", "bool_parsing"), "true or false"),
    **dict.fromkeys(("dict_type", "model_type", "model_attributes_type"), "a table"),
    "int_from_float": "a whole number",
    "string_type": 'a string (in "quotes")',
    "list_type": 'a list, e.g. ["a", "b"]',
}
_BOUNDS = {"greater_than_equal": ("ge", "at least"), "less_than_equal": ("le", "at most"),
           "greater_than": ("gt", "more than"), "less_than": ("lt", "less than")}  # fmt: skip
_NAME_PATTERN = r"^[a-z0-9_-]{1,64}$"


def _unwrap(tp: Any) -> Any:
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    return tp


def is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _literals(model: type[BaseModel], key: str | None = None) -> set[Any]:
    """Literal values of a model's fields (of `key` only, when given): a discriminated union
    puts the chosen member's tag into `loc`, and its error lists the allowed tags."""
    fields = model.model_fields
    chosen = [fields[key]] if key in fields else ([] if key else list(fields.values()))
    found = (get_args(f.annotation) for f in chosen if get_origin(f.annotation) is Literal)
    return {value for values in found for value in values}


def _members(tp: Any) -> list[Any]:
    if get_origin(tp) not in (Union, types.UnionType):
        return []
    return [_unwrap(m) for m in get_args(tp) if m is not type(None)]


def _locate(root: type[BaseModel], loc: tuple[int | str, ...]) -> tuple[list[int | str], Any, Any]:
    """Follow `loc` through the model types. Returns the path as the user wrote it (union tags
    dropped), the model owning the last key, and the type reached."""
    parts: list[int | str] = []
    tp: Any = root
    owner: Any = None
    for item in loc:
        tp = _unwrap(tp)
        members = _members(tp)
        tagged = [m for m in members if is_model(m) and item in _literals(m)]
        if tagged:
            tp = tagged[0]
            continue
        if members:
            tp = members[0] if len(members) == 1 else None
        parts.append(item)
        owner, field = (tp, tp.model_fields.get(item)) if is_model(tp) else (None, None)
        if isinstance(item, int):
            tp = get_args(tp)[0] if get_origin(tp) in (list, tuple) and get_args(tp) else None
        elif field is not None:
            tp = field.annotation
        else:
            tp = get_args(tp)[1] if get_origin(tp) is dict and get_args(tp) else None
    return parts, owner, _unwrap(tp)


def _dotted(parts: list[int | str]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def user_keys(model: type[BaseModel]) -> list[str]:
    if model is Settings:
        return list(USER_KEYS)
    return [field.alias or name for name, field in model.model_fields.items()]


def unknown_key(key: str, known: list[str]) -> tuple[str, str]:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else f"known: {', '.join(known)}; "
    return f"unknown key {key!r}", hint + EXAMPLE


def _describe(err: Any, owner: Any, reached: Any) -> tuple[str, str, str]:
    """(problem, fix, key to append to the location), from the error's type and context only."""
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind == "pollerd":
        return ctx["problem"], ctx["fix"], ctx.get("key", "")
    if kind == "value_error":  # parse_duration's text already carries its fix
        return str(ctx.get("error", err["msg"])), "", ""
    if kind == "secret":  # Secret's own message: names the reference, never the value
        return err["msg"], "", ""
    if kind == "missing":
        return "missing", f"add it; {EXAMPLE}", ""
    if kind == "extra_forbidden":
        return (*unknown_key(str(err["loc"][-1]), user_keys(owner) if owner else []), "")
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        key = str(ctx.get("discriminator", "")).strip("'")
        tags = sorted({tag for m in _members(reached) if is_model(m) for tag in _literals(m, key)})
        choice = " or ".join(f'"{tag}"' for tag in tags)
        if kind == "union_tag_not_found":
            return "missing", f"add {key} = {choice}; {EXAMPLE}", key
        return f"must be {choice}", "", key
    if kind == "string_pattern_mismatch":
        if ctx.get("pattern") == _NAME_PATTERN:
            return "must match [a-z0-9_-]", "1 to 64 lowercase letters, digits, _ or -", ""
        return f"must match {ctx.get('pattern')}", EXAMPLE, ""
    if kind == "literal_error":
        return f"must be {ctx['expected']}".replace("'", '"'), EXAMPLE, ""
    if kind in _BOUNDS:
        return f"must be {_BOUNDS[kind][1]} {ctx[_BOUNDS[kind][0]]}", EXAMPLE, ""
    if kind in _EXPECTED:
        return f"must be {_EXPECTED[kind]}", EXAMPLE, ""
    return err["msg"], EXAMPLE, ""


def problems_from(
    exc: ValidationError, root: type[BaseModel], prefix: tuple[int | str, ...]
) -> list[ConfigError]:
    found: dict[str, ConfigError] = {}
    for err in exc.errors(include_url=False, include_input=False):
        parts, owner, reached = _locate(root, err["loc"])
        problem, fix, key = _describe(err, owner, reached)
        item = ConfigError(_dotted([*prefix, *parts, *([key] if key else [])]), problem, fix)
        found.setdefault(str(item), item)
    return list(found.values())
