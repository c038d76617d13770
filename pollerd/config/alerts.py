"""`[[alerts]]`: the seller alert rules a user turns on (DESIGN §7 "Seller rules and reports").

One model per rule, picked by the table's `type` (`ALERT_MODELS`); `stores` globs choose the
shops it watches, `severity` is carried on the alert. The rules themselves live in
`pollerd.alerts`; this module only says what a table may hold. Beyond each table's own keys,
`alert_problems` checks what spans tables: a type nobody knows (naming the known ones), globs
that match no store, and a window or timer shorter than the poll interval of a store it applies
to (a rule evaluated once a pass cannot see a shorter span; the burst rule also relies on
seeing every new order within its window).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from decimal import Decimal
from fnmatch import fnmatchcase
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BeforeValidator, Field, ValidationError, model_validator

from pollerd.config.types import (
    EXAMPLE,
    Duration,
    StrictModel,
    at_least,
    at_most,
    invalid,
    short,
)
from pollerd.errors import ConfigError

__all__ = [
    "ALERT_MODELS",
    "AlertConfig",
    "AlertTable",
    "CancellationRateAlert",
    "DisputeDeadlineAlert",
    "HighValueAlert",
    "OrderBurstAlert",
    "UnpaidTimeoutAlert",
    "alert_problems",
    "alert_tables",
    "check_alerts",
]

Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
Amount = Annotated[Decimal, Field(ge=0, allow_inf_nan=False)]
Span = Annotated[Duration, at_least(timedelta(seconds=1), "a rule needs a span of time")]
Window = Annotated[Span, at_most(timedelta(days=366), "a rule looks back a year at most")]


class AlertConfig(StrictModel):
    """The keys every `[[alerts]]` table has."""

    type: str
    stores: list[str] = ["*"]  # noqa: RUF012
    severity: Literal["info", "warning", "critical"] = "warning"

    WINDOWS: ClassVar[tuple[str, ...]] = ()
    """The keys holding a span that must not be shorter than a store's poll interval."""


class HighValueAlert(AlertConfig):
    """`alert.high_value`: total >= threshold, per order currency (`thresholds`) and/or one
    `threshold` in `currency` with static `rates` (1 unit of the key = rate units of
    `currency`)."""

    type: Literal["high_value"] = "high_value"
    thresholds: dict[Currency, Amount] = {}  # noqa: RUF012
    threshold: Amount | None = None
    currency: Currency | None = None
    rates: dict[Currency, Annotated[Decimal, Field(gt=0, allow_inf_nan=False)]] = {}  # noqa: RUF012

    @model_validator(mode="after")
    def _complete(self) -> HighValueAlert:
        if self.threshold is not None and self.currency is None:
            raise invalid(
                "has no currency",
                'add currency = "CNY", the currency the threshold is in',
                key="threshold",
            )
        if self.rates and self.threshold is None:
            raise invalid("needs threshold and currency", "rates convert into them", key="rates")
        if not self.thresholds and self.threshold is None:
            fix = "add thresholds = { CNY = 5000 } or threshold = 5000 with currency"
            raise invalid("missing", fix, key="thresholds")
        return self

    def reaches(self, total: Decimal, currency: str) -> tuple[bool, Decimal | None]:
        """(whether `total` in `currency` is at least its threshold, that threshold in the
        order's currency); a currency with no threshold and no rate never reaches."""
        if currency in self.thresholds:
            limit = self.thresholds[currency]
            return total >= limit, limit
        if self.threshold is None:
            return False, None
        if currency == self.currency:
            return total >= self.threshold, self.threshold
        rate = self.rates.get(currency)
        if rate is None:
            return False, None
        # Compared in the shop currency, exactly: total × rate >= threshold.
        return total * rate >= self.threshold, self.threshold / rate

    def lowest(self, currency: str) -> Decimal | None:
        """The smallest total in `currency` that could reach (the query's bound)."""
        return self.reaches(Decimal(0), currency)[1]

    @property
    def currencies(self) -> set[str]:
        known = set(self.thresholds) | set(self.rates)
        return known | ({self.currency} if self.currency else set())


class UnpaidTimeoutAlert(AlertConfig):
    """`alert.unpaid_timeout`: still unpaid `after` its creation."""

    type: Literal["unpaid_timeout"] = "unpaid_timeout"
    after: Window = timedelta(minutes=30)
    WINDOWS: ClassVar[tuple[str, ...]] = ("after",)


Buyer = Literal["ip", "email", "phone"]
BUYERS: tuple[Buyer, ...] = ("ip", "email", "phone")


class OrderBurstAlert(AlertConfig):
    """`alert.order_burst`: `count` orders within `window` from one buyer (`by`)."""

    type: Literal["order_burst"] = "order_burst"
    by: list[Buyer] = Field(default_factory=lambda: list(BUYERS), min_length=1)
    count: int = Field(3, ge=2, le=10_000)
    window: Window = timedelta(hours=24)
    WINDOWS: ClassVar[tuple[str, ...]] = ("window",)


class CancellationRateAlert(AlertConfig):
    """`alert.cancellation_rate`: this window's rate above the mean of the previous ones by
    `above_mean`, or the rate over `max_rate_window` above `max_rate`."""

    type: Literal["cancellation_rate"] = "cancellation_rate"
    window: Window = timedelta(days=7)
    above_mean: float = Field(0.20, ge=0, le=100)
    max_rate: float = Field(0.15, gt=0, le=1)
    max_rate_window: Window = timedelta(days=90)
    min_orders: int = Field(20, ge=1)
    WINDOWS: ClassVar[tuple[str, ...]] = ("window", "max_rate_window")


class DisputeDeadlineAlert(AlertConfig):
    """`dispute.deadline`: reminders `before` each open dispute's evidence deadline."""

    type: Literal["dispute_deadline"] = "dispute_deadline"
    before: list[Window] = Field(
        default_factory=lambda: [timedelta(hours=72), timedelta(hours=24), timedelta(hours=4)],
        min_length=1,
    )
    min_amount: Amount | None = None
    reasons: list[str] = []  # noqa: RUF012

    @property
    def reason_set(self) -> frozenset[str]:
        return frozenset(r.lower() for r in self.reasons)


ALERT_MODELS: dict[str, type[AlertConfig]] = {
    model.model_fields["type"].default: model
    for model in (
        HighValueAlert,
        UnpaidTimeoutAlert,
        OrderBurstAlert,
        CancellationRateAlert,
        DisputeDeadlineAlert,
    )
}
"""Every `[[alerts]]` type by name, in the order config.example.toml documents them."""


def _alert_model(value: Any) -> Any:
    """A table given to `Settings` directly becomes its type's model here."""
    if isinstance(value, dict) and value.get("type") in ALERT_MODELS:
        return ALERT_MODELS[value["type"]].model_validate(value)
    return value


AlertTable = Annotated[AlertConfig, BeforeValidator(_alert_model)]


def check_alerts(value: Any) -> tuple[list[AlertConfig] | None, list[ConfigError]]:
    """Each `[[alerts]]` table validated by its type's model; problems under their own index.
    None when `alerts` is not a list (then `Settings` says so)."""
    tables, problems = alert_tables(value)
    return (None if tables is None else [model for _, model in tables]), problems


def alert_tables(value: Any) -> tuple[list[tuple[int, AlertConfig]] | None, list[ConfigError]]:
    """`check_alerts`, each valid table with its index in the file: a table with problems is
    left out, so a list position is not its `alerts[i]` (`alert_problems` needs the index)."""
    from pollerd.config.explain import problems_from  # late: explain imports the models

    if not isinstance(value, list):
        return None, []
    problems: list[ConfigError] = []
    models: list[tuple[int, AlertConfig]] = []
    known = ", ".join(ALERT_MODELS)
    for i, table in enumerate(value):
        if not isinstance(table, dict):
            problems.append(ConfigError(f"alerts[{i}]", "must be a table", EXAMPLE))
            continue
        kind = table.get("type")
        if kind is None:
            problems.append(ConfigError(f"alerts[{i}].type", "missing", f"known: {known}"))
            continue
        if kind not in ALERT_MODELS:
            problem = f"no alert rule named {kind!r}"
            problems.append(ConfigError(f"alerts[{i}].type", problem, f"known: {known}"))
            continue
        try:
            models.append((i, ALERT_MODELS[kind].model_validate(table)))
        except ValidationError as exc:
            problems.extend(problems_from(exc, ALERT_MODELS[kind], ("alerts", i)))
    return models, problems


def alert_problems(
    alerts: Sequence[AlertConfig],
    intervals: dict[str, timedelta],
    at: Sequence[int] | None = None,
) -> list[ConfigError]:
    """What spans tables: `stores` globs matching no store, and spans shorter than the poll
    interval of a store the rule applies to (`intervals`: store name → interval). `at`: each
    table's index in the file (`alert_tables`), when some tables were left out."""
    problems: list[ConfigError] = []
    for n, alert in enumerate(alerts):
        i = at[n] if at is not None else n
        for j, glob in enumerate(alert.stores):
            if intervals and not any(fnmatchcase(name, glob) for name in intervals):
                fix = f"defined: {', '.join(intervals)}"
                problems.append(ConfigError(f"alerts[{i}].stores[{j}]",
                                            f"{glob!r} matches no store", fix))  # fmt: skip
        applies = [n for n in intervals if any(fnmatchcase(n, g) for g in alert.stores)]
        for key in alert.WINDOWS:
            span: timedelta = getattr(alert, key)
            for name in applies:
                if span < intervals[name]:
                    problem = (
                        f"{short(span)} is shorter than the poll interval of store {name!r} "
                        f"({short(intervals[name])})"
                    )
                    fix = "make it at least one interval, or poll that store more often"
                    problems.append(ConfigError(f"alerts[{i}].{key}", problem, fix))
                    break
    return problems
