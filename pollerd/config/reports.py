"""`[[reports]]`: the daily digest and the weekly report a channel asks for (DESIGN §7 "Seller
rules and reports"). Opt-in, one table per report: `type` (daily | weekly), `at` (local time of
day, in each channel's zone), `channels` (required: a report is sent to the channels its table
names, never through `[[routes]]`), `stores` (globs, default every store) and, weekly only,
`day` (the weekday it is sent on).

Beyond a table's own keys, `report_problems` checks what spans tables: a channel that is not
defined, a glob matching no store, and a channel given two reports of one type (its two
reports of yesterday would read alike and share an id). The reports themselves are made in
`pollerd.alerts.reports`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import time
from fnmatch import fnmatchcase
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, ValidationError, model_validator

from pollerd.config.types import EXAMPLE, StrictModel, invalid
from pollerd.errors import ConfigError

__all__ = ["WEEKDAYS", "ReportConfig", "check_reports", "report_problems"]

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
"""`day` values, in `date.weekday()` order."""

_CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def _clock(value: str) -> str:
    """`HH:MM`, 24-hour, zero-padded: "9:00" or "9am" would be read differently by people."""
    if not _CLOCK.match(value):
        raise invalid("must be a local time HH:MM (24-hour)", 'e.g. at = "09:00"')
    return value


def _weekday(value: str) -> str:
    if value.lower() not in WEEKDAYS:
        raise invalid("must be a weekday", f"one of {', '.join(WEEKDAYS)}")
    return value.lower()


class ReportConfig(StrictModel):
    """One `[[reports]]` table."""

    type: Literal["daily", "weekly"]
    at: Annotated[str, AfterValidator(_clock)] = "09:00"
    channels: list[str] = Field(min_length=1)
    stores: list[str] = ["*"]  # noqa: RUF012
    day: Annotated[str, AfterValidator(_weekday)] | None = None

    @model_validator(mode="after")
    def _day_is_weekly(self) -> ReportConfig:
        if self.day is not None and self.type != "weekly":
            raise invalid("is only for weekly reports", "remove it, or set type = \"weekly\"",
                          key="day")  # fmt: skip
        return self

    @property
    def event(self) -> str:
        """The event type it makes: `report.daily` / `report.weekly`."""
        return f"report.{self.type}"

    @property
    def clock(self) -> time:
        hours, minutes = self.at.split(":")
        return time(int(hours), int(minutes))

    @property
    def weekday(self) -> int:
        """The day a weekly report is sent on (Monday 0), default Monday."""
        return WEEKDAYS.index(self.day or "monday")


def check_reports(
    value: Any,
) -> tuple[list[tuple[int, ReportConfig]] | None, list[ConfigError]]:
    """Each `[[reports]]` table validated, as (its index, its model); problems under their own
    index (`reports[1].at`). None when `reports` is not a list (then `Settings` says so)."""
    from pollerd.config.explain import problems_from  # late: explain imports the models

    if not isinstance(value, list):
        return None, []
    models: list[tuple[int, ReportConfig]] = []
    problems: list[ConfigError] = []
    for i, table in enumerate(value):
        if not isinstance(table, dict):
            problems.append(ConfigError(f"reports[{i}]", "must be a table", EXAMPLE))
            continue
        try:
            models.append((i, ReportConfig.model_validate(table)))
        except ValidationError as exc:
            problems.extend(problems_from(exc, ReportConfig, ("reports", i)))
    return models, problems


def report_problems(
    reports: Sequence[tuple[int, ReportConfig]], channels: Sequence[str], stores: Sequence[str]
) -> list[ConfigError]:
    """Channels that are not defined, globs matching no store (when there are stores), and a
    channel given two reports of one type; `reports` as `check_reports` returns them."""
    problems: list[ConfigError] = []
    first: dict[tuple[str, str], int] = {}
    defined = f"defined: {', '.join(channels) or 'none'}"
    for i, report in reports:
        for j, name in enumerate(report.channels):
            key = f"reports[{i}].channels[{j}]"
            if name not in channels:
                problems.append(ConfigError(key, f"no channel named {name!r}", defined))
            elif (report.type, name) in first:
                other = first[(report.type, name)]
                problem = f"channel {name!r} already gets a {report.type} report (reports[{other}])"
                fix = "one report of each type per channel; remove one, or merge their stores"
                problems.append(ConfigError(key, problem, fix))
            else:
                first[(report.type, name)] = i
        for j, glob in enumerate(report.stores):
            if stores and not any(fnmatchcase(name, glob) for name in stores):
                fix = f"defined: {', '.join(stores)}"
                problems.append(ConfigError(f"reports[{i}].stores[{j}]",
                                            f"{glob!r} matches no store", fix))  # fmt: skip
    return problems
