"""Shopify's search syntax (`query:` arguments) and cursor pagination over sorted rows.

Search syntax (https://shopify.dev/docs/api/usage/search-syntax, research/shopify.md §1.2):
terms are ANDed when juxtaposed or joined by `AND`, `OR` must be written, `-term`/`NOT term`
negates, comparators are `:`, `:<`, `:>`, `:<=`, `:>=`. "Date values must be a string
surrounded by quotes": an *unquoted* date-time (it holds colons, which Shopify's tokenizer splits
at) is dropped, so the term filters nothing. A bare date without a time (`updated_at:>2019-12-01`,
a docs example) and `now` still work. Unknown fields are ignored, as Shopify ignores them.

Cursors are base64 JSON `{"last_id": id, "last_value": value}` with dates rendered like
`"2005-07-31 15:57:11.000000"` (fixture `graphql_orders_list_cursors_docs.json`): rows are ordered
by (sort value, id), so orders sharing one `updatedAt` page correctly.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Generic, TypeVar

T = TypeVar("T")
_TERM = re.compile(r"^([A-Za-z_]+):(>=|<=|>|<)?(.*)$", re.DOTALL)
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
CURSOR_DATE = "%Y-%m-%d %H:%M:%S.000000"


class InvalidCursor(ValueError):
    """A cursor that does not decode (the client corrupted or invented it)."""


@dataclass(frozen=True, slots=True)
class Term:
    field: str  # "" for free text
    op: str  # ":", ">", ">=", "<", "<="
    value: str
    quoted: bool
    negated: bool = False


@dataclass(slots=True)
class Search:
    """A parsed `query:`: an OR of AND-groups of terms."""

    groups: list[list[Term]] = field(default_factory=lambda: [[]])

    @property
    def fields(self) -> set[str]:
        return {t.field for group in self.groups for t in group}

    def matches(self, lookup: Callable[[str], Any], now: datetime) -> bool:
        """`lookup(field)` gives the row's value: datetime, bool, int, str, a frozenset of
        accepted words, or `...` for a field this resource cannot filter on (term ignored)."""
        return any(all(_term_matches(t, lookup, now) for t in g) for g in self.groups)


def _tokens(text: str) -> list[str]:
    tokens: list[str] = []
    current: list[str] = []
    quote = ""
    for ch in text:
        if quote:
            current.append(ch)
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
            current.append(ch)
        elif ch.isspace() or ch in "()":
            if current:
                tokens.append("".join(current))
                current = []
        else:
            current.append(ch)
    if current:
        tokens.append("".join(current))
    return tokens


def parse_search(text: str | None) -> Search:
    search = Search()
    negate_next = False
    for token in _tokens(text or ""):
        if token == "AND":
            continue
        if token == "OR":
            search.groups.append([])
            continue
        if token == "NOT":
            negate_next = True
            continue
        negated, negate_next = negate_next, False
        if token.startswith("-") and len(token) > 1:
            negated, token = True, token[1:]
        term = _parse_term(token, negated)
        if term is not None:
            search.groups[-1].append(term)
    search.groups = [g for g in search.groups if g] or [[]]
    return search


def _parse_term(token: str, negated: bool) -> Term | None:
    match = _TERM.match(token)
    if match is None:
        value, quoted = _unquote(token)
        return Term("", ":", value, quoted, negated)
    name, op, raw = match.group(1).lower(), match.group(2) or ":", match.group(3)
    value, quoted = _unquote(raw)
    if not quoted and ":" in value:
        return None  # an unquoted date-time: split at its colons by Shopify, filters nothing
    return Term(name, op, value, quoted, negated)


def _unquote(raw: str) -> tuple[str, bool]:
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        return raw[1:-1], True
    return raw, False


def parse_date(value: str, now: datetime) -> datetime | None:
    if value.lower() == "now":
        return now
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _compare(op: str, left: Any, right: Any) -> bool:
    if op == ">":
        return bool(left > right)
    if op == ">=":
        return bool(left >= right)
    if op == "<":
        return bool(left < right)
    if op == "<=":
        return bool(left <= right)
    return bool(left == right)


def _term_matches(term: Term, lookup: Callable[[str], Any], now: datetime) -> bool:
    actual = lookup(term.field)
    if actual is ...:
        return True
    result = _value_matches(term, actual, now)
    if result is None:
        return True  # a value Shopify cannot parse filters nothing
    return result != term.negated


def _value_matches(term: Term, actual: Any, now: datetime) -> bool | None:
    value = term.value
    if isinstance(actual, datetime):
        wanted = parse_date(value, now)
        if wanted is None:
            return None
        if term.op == ":" and _DATE_ONLY.match(value):
            return actual.date() == wanted.date()
        return _compare(term.op, actual, wanted)
    if isinstance(actual, date):
        wanted = parse_date(value, now)
        return None if wanted is None else _compare(term.op, actual, wanted.date())
    if isinstance(actual, bool):
        return actual == (value.lower() == "true")
    if isinstance(actual, int):
        tail = value.rsplit("/", 1)[-1]
        if not tail.isdigit():
            return None
        return _compare(term.op, actual, int(tail))
    if isinstance(actual, frozenset):
        return value.lower() in actual
    if isinstance(actual, str):
        return _compare(term.op, actual.lower(), value.lower())
    return None


# --- cursors and pages -----------------------------------------------------------------------


def encode_cursor(last_id: int, last_value: Any) -> str:
    if isinstance(last_value, datetime):
        last_value = last_value.astimezone(UTC).strftime(CURSOR_DATE)
    raw = json.dumps({"last_id": last_id, "last_value": last_value}, separators=(",", ":"))
    return base64.b64encode(raw.encode()).decode()


def decode_cursor(cursor: str) -> tuple[Any, int]:
    """(sort key, id) of a cursor; dates come back as aware datetimes."""
    try:
        data = json.loads(base64.b64decode(cursor.encode(), validate=True))
        last_id, value = int(data["last_id"]), data["last_value"]
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise InvalidCursor(f"Invalid cursor: {cursor}") from exc
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = datetime.strptime(value, CURSOR_DATE).replace(tzinfo=UTC)
    return value, last_id


@dataclass(slots=True)
class Row(Generic[T]):
    key: Any  # the sort value (datetime, int, Decimal, str)
    id: int
    item: T


@dataclass(slots=True)
class Page(Generic[T]):
    rows: list[Row[T]]
    has_next: bool
    has_previous: bool

    def cursor(self, row: Row[T]) -> str:
        return encode_cursor(row.id, row.key)


def paginate(
    rows: Sequence[Row[T]],
    *,
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
    reverse: bool = False,
) -> Page[T]:
    """Relay paging over `rows` ordered by (key, id) ascending, or descending with `reverse`.
    `first=None and last=None` returns everything (bulk operations)."""
    ordered = sorted(rows, key=lambda r: (r.key, r.id), reverse=reverse)

    def beyond(row: Row[T], mark: tuple[Any, int]) -> bool:
        pair = (row.key, row.id)
        return pair < mark if reverse else pair > mark

    def precedes(row: Row[T], mark: tuple[Any, int]) -> bool:
        pair = (row.key, row.id)
        return pair > mark if reverse else pair < mark

    start, end = 0, len(ordered)
    try:
        if after:
            mark = decode_cursor(after)
            start = next((i for i, r in enumerate(ordered) if beyond(r, mark)), len(ordered))
        if before:
            mark = decode_cursor(before)
            end = next((i for i, r in enumerate(ordered) if not precedes(r, mark)), len(ordered))
    except TypeError as exc:  # a cursor made for another sort key
        raise InvalidCursor("Invalid cursor for current pagination") from exc
    end = max(end, start)
    window_start, window_end = start, end
    if first is not None:
        window_end = min(end, start + first)
    if last is not None:
        window_start = max(window_start, window_end - last)
    return Page(
        rows=list(ordered[window_start:window_end]),
        has_next=window_end < len(ordered),
        has_previous=window_start > 0,
    )
