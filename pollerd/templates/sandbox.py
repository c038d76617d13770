"""The templates' sandbox, with bounded resources (issue 12 item 6).

Jinja's sandbox keeps a template away from Python's internals but not from the machine's memory:
`{{ 'x' * 10**9 }}` was folded at compile time (4.9 GB, 121 s, in `pollerd check` and at every
load), and `10**10` got pollerd killed by the kernel. A template is the operator's, but a slip
in one must cost one template error (the built-in template is used instead), never the daemon.

What is bounded, per render:
- every value a template builds (`*`, `+`, `%`, `**`, calls, amplifying filters such as
  `center` or `replace`) to `MAX_SIZE` characters (or items), checked BEFORE it is built
  where the size is known in advance;
- integers to `MAX_INT_BITS` bits (`9**9**9` would take minutes);
- loop iterations to `MAX_STEPS` in all (every `{% for %}` counts, nested or not) and the time
  to `MAX_SECONDS`, checked at each iteration, operation and output;
- the output to `MAX_SIZE` characters (counted as each `{{ }}` is written, block sets and
  macros included).
Intercepted operators are also no longer folded at compile time (Jinja skips them), so loading
a template never evaluates it.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from jinja2 import nodes
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from pollerd.errors import ControlFlow

MAX_SIZE = 1_000_000  # characters: ~50x the longest channel limit (email), far below harm
MAX_INT_BITS = 4096
MAX_STEPS = 300_000  # loop iterations and operations of one render (a digest needs ~1,000)
MAX_SECONDS = 5.0
# Filters whose result can be far larger than their input; the others are bounded by it.
AMPLIFIERS = ("center", "indent", "batch", "slice", "replace", "format", "join", "tojson",
              "wordwrap", "truncate", "list", "string", "pprint", "urlize")  # fmt: skip
_ITER = "_pollerd_bounded_iter"  # the filter every `{% for %}` iterable is wrapped in


class TooLarge(SecurityError, ControlFlow):
    """A template would exceed a bound: a `TemplateError`, so `check` lists it with
    `file:line` and a send falls back to the built-in template."""


@dataclass
class _Budget:
    deadline: float
    steps: int = 0
    written: int = 0
    started: float = field(default_factory=time.monotonic)

    def step(self, count: int = 1) -> None:
        self.steps += count
        if self.steps > MAX_STEPS:
            raise TooLarge(f"template runs more than {MAX_STEPS:,} loop iterations/operations")
        if time.monotonic() > self.deadline:
            raise TooLarge(f"template runs longer than {MAX_SECONDS:g}s")


_budget: ContextVar[_Budget | None] = ContextVar("pollerd_template_budget", default=None)


@contextmanager
def bounded() -> Iterator[None]:
    """One render's budget (renders nest: a digest renders each event's title)."""
    token = _budget.set(_Budget(time.monotonic() + MAX_SECONDS))
    try:
        yield
    finally:
        _budget.reset(token)


def _step(count: int = 1) -> None:
    budget = _budget.get()
    if budget is not None:
        budget.step(count)


def wrote(text: str) -> str:
    """Count output as it is written (the `finalize` hook calls this for every `{{ }}`)."""
    budget = _budget.get()
    if budget is not None:
        budget.written += len(text)
        if budget.written > MAX_SIZE:
            raise TooLarge(f"template output exceeds {MAX_SIZE:,} characters")
        budget.step()
    return text


def join_bounded(chunks: Iterator[str]) -> str:
    """`"".join` of a template's output, refusing once it passes `MAX_SIZE` (literal text in
    a loop is not seen by `finalize`)."""
    parts: list[str] = []
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > MAX_SIZE:
            error = TooLarge(f"template output exceeds {MAX_SIZE:,} characters")
            throw = getattr(chunks, "throw", None)
            if throw is not None:  # raised where the template stands: its file:line is named
                throw(error)
            raise error
        parts.append(chunk)
    return "".join(parts)


def weight(value: Any, limit: int = MAX_SIZE) -> int:
    """Characters/items `value` stands for (nested containers summed), counted only up to
    just past `limit`: the answer is exact below it and cheap above it."""
    if isinstance(value, str | bytes):
        return len(value)
    if isinstance(value, dict):
        value = [*value.keys(), *value.values()]
    if isinstance(value, list | tuple | set | frozenset):
        total = len(value)
        for item in value:
            if total > limit:
                break
            if isinstance(item, str | bytes | list | tuple | set | frozenset | dict):
                total += weight(item, limit - total)
        return total
    return 1


def _refuse_size(size: int, what: str) -> None:
    if size > MAX_SIZE:
        raise TooLarge(f"{what} would make {size:,} characters/items (at most {MAX_SIZE:,})")


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _refuse_bits(bits: int, what: str) -> None:
    if bits > MAX_INT_BITS:
        raise TooLarge(f"{what} would make a {bits:,}-bit number (at most {MAX_INT_BITS:,})")


_SEQUENCE = (str, bytes, list, tuple)
_CONTAINER = (*_SEQUENCE, set, frozenset, dict)
_PERCENT = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?")
_BRACE_SPEC = re.compile(r"\{[^{}]*?:([^{}]*)\}")


def _format_size(fmt: str, args: Iterable[Any]) -> int:
    """An upper estimate of what `fmt % args` / `fmt.format(*args)` makes: widths written in
    the format, plus every integer argument when a width comes from one (`%*s`, `{:{}}`)."""
    values = list(args)
    size = len(fmt) + sum(weight(v) for v in values)
    numbers = [n for m in _PERCENT.finditer(fmt) for n in m.groups() if n]
    numbers += re.findall(r"\d+", " ".join(_BRACE_SPEC.findall(fmt)))
    size += sum(int(n) for n in numbers if n != "*" and len(n) < 20) + (
        MAX_SIZE + 1 if any(len(n) >= 20 for n in numbers) else 0
    )
    if "*" in numbers or re.search(r":[^{}]*\{", fmt):
        size += sum(abs(v) for v in values if _int(v))
    return size


def check_binop(operator: str, left: Any, right: Any) -> None:
    """Refuse an operation whose result would pass a bound, before computing it."""
    _step()
    if operator == "*":
        for seq, times in ((left, right), (right, left)):
            if isinstance(seq, _CONTAINER) and _int(times):
                _refuse_size(weight(seq) * max(times, 0), "'*'")
        if _int(left) and _int(right):
            _refuse_bits(left.bit_length() + right.bit_length(), "'*'")
    elif operator == "**" and _int(left) and _int(right) and right > 0 and abs(left) > 1:
        _refuse_bits(right * left.bit_length(), "'**'")
    elif operator == "+" and isinstance(left, _SEQUENCE) and isinstance(right, _SEQUENCE):
        _refuse_size(weight(left) + weight(right), "'+'")
    elif operator == "%" and isinstance(left, str):
        args = right if isinstance(right, tuple) else (right,)
        if isinstance(right, dict):
            args = tuple(right.values())
        _refuse_size(_format_size(left, args), "'%'")


_WIDTH = ("ljust", "rjust", "center", "zfill")


def _check_str_method(name: str, text: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    given = [*args, *kwargs.values()]
    if name in _WIDTH and given and _int(given[0]):
        _refuse_size(given[0], f"str.{name}")
    elif name == "expandtabs":
        tab = given[0] if given and _int(given[0]) else 8
        _refuse_size(len(text) + text.count("\t") * max(tab, 0), "str.expandtabs")
    elif name == "replace" and len(given) >= 2:
        old, new = str(given[0]), str(given[1])
        hits = text.count(old) if old else len(text) + 1
        _refuse_size(len(text) + hits * len(new), "str.replace")
    elif name in ("format", "format_map"):
        values = [*args, *kwargs.values()]
        if name == "format_map" and args and isinstance(args[0], dict):
            values = list(args[0].values())
        _refuse_size(_format_size(text, values), f"str.{name}")
    elif name == "join" and given:
        items = list(given[0]) if not isinstance(given[0], str) else given[0]
        _refuse_size(weight(items) + len(text) * len(items), "str.join")


def _checked(value: Any, what: str) -> Any:
    if isinstance(value, _CONTAINER):
        _refuse_size(weight(value), what)
    elif _int(value):
        _refuse_bits(value.bit_length(), what)
    return value


def _bounded_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """`func` refusing integer arguments past `MAX_SIZE` (widths, counts: `center(10**9)`),
    a `join`/`replace` whose result would pass it, and any result past it."""

    @functools.wraps(func)  # keeps `jinja_pass_arg` (pass_context & co.)
    def bounded_filter(*args: Any, **kwargs: Any) -> Any:
        _step()
        passed = [
            a
            for a in args
            if not isinstance(a, Context | nodes.EvalContext | ImmutableSandboxedEnvironment)
        ]
        value, rest = (passed[0], passed[1:]) if passed else (None, [])
        if name == "format" and isinstance(value, str):
            _refuse_size(_format_size(value, [*rest, *kwargs.values()]), "|format")
        elif name == "replace" and isinstance(value, str) and len(rest) >= 2:
            _check_str_method("replace", value, tuple(rest), {})
        elif name in ("indent", "tojson"):  # the width repeats on every line
            width = next(iter([*rest, *kwargs.values()]), 0)
            width = width if _int(width) else len(str(width))
            _refuse_size(weight(value) * (1 + max(width, 0)), f"|{name}")
        elif name == "join" and value is not None and not isinstance(value, str):
            items = list(value)
            sep = rest[0] if rest else kwargs.get("d", "")
            _refuse_size(weight(items) + len(str(sep)) * len(items), "|join")
            args = tuple(items if a is value else a for a in args)
        else:
            for number in [*rest, *kwargs.values()]:
                if _int(number):
                    _refuse_size(number, f"|{name}")
        return _checked(func(*args, **kwargs), f"|{name}")

    return bounded_filter


def _bounded_iter(values: Any) -> Iterator[Any]:
    for value in values:
        _step()
        yield value


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """`ImmutableSandboxedEnvironment` with the bounds above."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        for name in AMPLIFIERS:
            if name in self.filters:
                self.filters[name] = _bounded_filter(name, self.filters[name])
        self.filters[_ITER] = _bounded_iter
        # lorem ipsum of any length is not something an alert needs
        self.globals.pop("lipsum", None)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        check_binop(operator, left, right)
        return _checked(super().call_binop(context, operator, left, right), f"'{operator}'")

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _step()
        owner = getattr(__obj, "__self__", None)
        name = getattr(__obj, "__name__", "")
        if isinstance(owner, str):
            _check_str_method(name, owner, args, kwargs)
        result = super().call(__context, __obj, *args, **kwargs)
        return _checked(result, f"{name or 'call'}()")

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """`str.format` reaches templates as Jinja's wrapper (made at attribute access), not
        as a method `call` could recognise: check its widths here."""
        wrapper = super().wrap_str_format(value)
        if wrapper is None:
            return None
        text, name = value.__self__, value.__name__

        def checked(*args: Any, **kwargs: Any) -> str:
            _check_str_method(name, text, args, kwargs)
            return wrapper(*args, **kwargs)

        return checked

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        """Every `{% for %}` iterable goes through `_bounded_iter`, which counts iterations:
        the only hook a loop of literal text passes through."""
        tree = super()._parse(source, name, filename)
        for loop in tree.find_all(nodes.For):
            loop.iter = nodes.Filter(loop.iter, _ITER, [], [], None, None, lineno=loop.lineno)
        return tree
