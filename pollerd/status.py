"""Operator views: `status`, `check`, `notify-test`, `deliveries list`.

Read-only against the stores and the database (except `notify-test`, which sends one sample).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from pollerd import __version__
from pollerd.alerts.store import episode
from pollerd.config import Settings, sqlite_file
from pollerd.errors import EXIT_USAGE, DamagedDatabase, PollerdError
from pollerd.model import Event, LineItem, Order
from pollerd.quarantine import held
from pollerd.startpoint import in_future, mismatch
from pollerd.store import Store, fault, open_store


class UnknownName(PollerdError):
    """A channel or event type on the command line that does not exist: a usage error."""

    exit_code = EXIT_USAGE


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def _ago(when: datetime | None, now: datetime) -> float | None:
    return None if when is None else round((now - when).total_seconds(), 1)


def stale_after(interval: timedelta) -> float:
    """Seconds without a successful poll after which `status` calls a store stale: three
    intervals, but never less than 5 minutes, so `pollerd once` from a per-minute timer (which
    polls between its runs, not every interval) is not reported stale between two runs."""
    return max(3 * interval.total_seconds(), 300.0)


def collect(settings: Settings) -> dict[str, Any]:
    """Everything `status` shows, as plain data (the `--json` output is this)."""
    store = open_store(settings.pollerd.database)
    now = datetime.now(UTC)
    stores = []
    healthy = True
    try:
        for cfg in settings.stores:
            cursor = store.cursor(cfg.name)
            failing = bool(
                cursor
                and cursor.last_error_at
                and (cursor.last_success is None or cursor.last_error_at > cursor.last_success)
            )
            ep = episode(store, cfg.name)  # the failure episode (item 14), across processes
            failing = failing or ep is not None
            since = _ago(cursor.last_success if cursor else None, now)
            stale = cfg.enabled and since is not None and since > stale_after(cfg.interval)
            state = "never polled" if cursor is None else "ok"
            state = "failing" if failing else ("stale" if stale else state)
            # Polls succeed and nothing alerts: say so rather than "ok" (issue 11).
            future = cursor is not None and in_future(cursor, now)
            state = "start point in the future" if future else state
            quarantined = held(store, cfg.name)
            # A set-aside order waits for a person (fix it, or `pollerd quarantine drop`).
            healthy &= not failing and not stale and not future and not quarantined
            stores.append(
                {
                    "name": cfg.name,
                    "platform": cfg.platform,
                    "enabled": cfg.enabled,
                    "cursor": cursor.updated_at.isoformat() if cursor else None,
                    "start_point": cursor.start_at.isoformat() if cursor else None,
                    "last_success": cursor.last_success.isoformat()
                    if cursor and cursor.last_success
                    else None,
                    "seconds_since_success": since,
                    "cursor_lag_seconds": _ago(cursor.updated_at if cursor else None, now),
                    "late_events": store.late_events(cfg.name),
                    "budget_used": store.budget_used(cfg.name),
                    "last_error": cursor.last_error if failing and cursor else None,
                    "state": state,
                    "failing_since": _iso(ep.since) if ep else None,
                    "failed_passes": ep.failures if ep else 0,
                    "store_alerted": ep.alerted if ep else False,
                    "quarantined": quarantined,
                }
            )
        counts = store.counts()
        quiet = store.quiet(now.timestamp())
        broken = store.broken_channels()
        failing_channels = _failing_channels(settings, store, now.timestamp())
        channels = []
        for ch in settings.channels:
            c = counts.get(ch.name, {"pending": 0, "retrying": 0, "sent": 0, "dead": 0})
            problem = ch.name in broken or ch.name in failing_channels or c["dead"] > 0
            healthy &= not problem
            channels.append(
                {
                    "name": ch.name,
                    "type": ch.type,
                    **c,
                    "broken": broken.get(ch.name),
                    "failing": failing_channels.get(ch.name),
                    # pending rows held by a route's quiet hours (not a problem) and their end
                    "quiet": quiet.get(ch.name, (0, 0.0))[0],
                    "quiet_until": _iso(quiet[ch.name][1]) if ch.name in quiet else None,
                }
            )
        database = database_state(store)
        healthy &= database["problem"] is None
    finally:
        store.close()
    return {
        "healthy": healthy,
        "time": now.isoformat(),
        "timezone": settings.pollerd.timezone,
        "database": database,
        "stores": stores,
        "channels": channels,
    }


def database_state(store: Store) -> dict[str, Any]:
    """Can pollerd write its database, with room to grow? Reading it says nothing about
    either (a full disk or a read-only file showed "healthy", issue 12): one small committed
    write (the daemon's own probe) and the file system's free space."""
    name = fault.where(store)
    free = fault.free_bytes(name) if sqlite_file(store.url) is not None else None
    problem: str | None = None
    writable = True
    try:
        store.set_meta(fault.PROBE_KEY, f"{datetime.now(UTC).timestamp():.3f}")
    except Exception as exc:  # noqa: BLE001 - typed when it is a machine fault, else named
        error = fault.classify(exc, name)
        problem = str(error) if error else f"database {name}: cannot write: {exc}"
        writable = False
    if writable and free is not None and free < fault.MIN_FREE:
        problem = (
            f"database {name}: the disk is almost full ({fault.for_humans(free)} free in "
            f"{Path(name).parent}); pollerd pauses when it is full: free some space"
        )
    return {"name": name, "writable": writable, "free_bytes": free, "problem": problem}


def _failing_channels(settings: Settings, store: Store, now: float) -> dict[str, str]:
    """Channels whose every attempt has failed for `failing_after` (the daemon records the
    episode, `pollerd.alerts.channel`): "failing for 20m: HTTP 500 ..."."""
    from pollerd.alerts.channel import episodes, for_humans

    after = settings.pollerd.delivery.failing_after.total_seconds()
    return {
        name: f"failing for {for_humans(now - e.since)}: {e.detail}"
        for name, e in episodes(store).items()
        if now - e.since >= after
    }


def local_clock(iso: str, zone: str) -> str:
    """ "08:00" in `zone`, or "Mon 08:00" when that is not within the next day."""
    from zoneinfo import ZoneInfo

    at = datetime.fromisoformat(iso).astimezone(ZoneInfo(zone))
    near = at - datetime.now(ZoneInfo(zone)) < timedelta(hours=23)
    return f"{at:%H:%M}" if near else f"{at:%a %H:%M}"


def _span(seconds: float | None) -> str:
    """`2.8s`, `3m`, `25d7h`: a lag of weeks in seconds ("218672…") did not fit a column."""
    from pollerd.alerts.channel import for_humans

    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:g}s"
    days, rest = divmod(int(seconds), 86400)
    if not days:
        return for_humans(rest)
    return f"{days}d{rest // 3600}h" if rest >= 3600 else f"{days}d"


def render(report: dict[str, Any]) -> None:
    """Tables of short cells, then one paragraph per problem. In 80 columns (or a pipe, which
    rich reads as 80) an error inside a table cell wrapped into ~40 lines of ten characters and
    cut the platform to "woocom…"; a paragraph below the table wraps at the full width."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console()
    problems: list[str] = []
    table = Table(title="stores")
    for column in ("store", "platform", "state", "last success", "cursor lag", "budget", "late"):
        table.add_column(column, no_wrap=column in ("platform", "budget", "late"))
    for s in report["stores"]:
        budget = s["budget_used"]
        since = s["seconds_since_success"]
        table.add_row(
            s["name"],
            s["platform"],
            s["state"],
            "-" if since is None else f"{_span(since)} ago",
            _span(s["cursor_lag_seconds"]),
            "-" if budget is None else f"{budget:.0%}",
            str(s["late_events"]),
        )
        if s.get("failing_since"):
            passes = s.get("failed_passes") or 0
            passed = f"{passes} failed pass{'' if passes == 1 else 'es'}"
            problems.append(
                f"{s['name']}: failing since {s['failing_since'][:19]}Z ({passed}): "
                f"{s['last_error'] or 'no error recorded'}"
            )
        elif s["last_error"]:
            problems.append(f"{s['name']}: last error: {s['last_error']}")
    console.print(table)
    aside = [q for s in report["stores"] for q in s.get("quarantined", [])]
    if aside:
        table = Table(title="orders set aside (they do not read; `pollerd quarantine list`)")
        for column in ("store", "order", "field", "problem", "first seen", "last seen"):
            table.add_column(column)
        for q in aside:
            table.add_row(
                q["store"], q["number"], q["field"], q["problem"], q["first_seen"], q["last_seen"]
            )
        console.print(table)
    table = Table(title="channels")
    for column in ("channel", "type", "pending", "retrying", "sent", "dead"):
        table.add_column(column, no_wrap=column != "channel")
    for c in report["channels"]:
        table.add_row(
            c["name"],
            c["type"],
            str(c["pending"]),
            str(c["retrying"]),
            str(c["sent"]),
            str(c["dead"]),
        )
        held = c["broken"] or c.get("failing")
        if held:
            problems.append(f"{c['name']}: held: {held}")
    console.print(table)
    zone = report.get("timezone") or "UTC"
    for c in report["channels"]:
        if c.get("quiet"):
            until = local_clock(c["quiet_until"], zone)
            console.print(Text(f"{c['name']}: {c['quiet']} held until {until} (quiet hours)"))
    database = report["database"]
    if database["problem"]:
        problems.append(database["problem"])
    else:
        free = fault.for_humans(database["free_bytes"])
        console.print(Text(f"database {database['name']}: writable, {free} free"))
    for problem in problems:
        # Text, not markup: an error quoting "[pollerd]" or "[/]" must print as it is.
        console.print(Text(f"! {problem}"))
    console.print("healthy" if report["healthy"] else "[bold red]unhealthy[/]")


async def check_all(settings: Settings, echo: Callable[[str], None]) -> bool:
    """Config is already valid (loading it validated it, user templates' syntax included);
    render the user's templates against a sample of every event, then probe each enabled
    store read-only and each channel without sending (`Channel.probe`). Every problem is
    reported, not just the first. A disabled store is named, not probed: it is not polled
    either, so its failure is no reason to fail."""
    from pollerd.runtime import build_source

    echo(
        f"config: ok ({len(settings.stores)} stores, {len(settings.channels)} channels, "
        f"{len(settings.routes)} routes)"
    )
    ok = check_templates(settings, echo)
    ok &= check_start_points(settings, echo)
    for cfg in settings.stores:
        if not cfg.enabled:
            echo(f"- {cfg.name}: disabled (enabled = false): not probed")
            continue
        source = build_source(cfg)
        try:
            echo(f"✓ {cfg.name}: {await source.check()}")
        except PollerdError as exc:
            echo(f"✗ {cfg.name}: {exc}")
            ok = False
        finally:
            await source.aclose()
    return await check_channels(settings, echo) and ok


async def check_channels(settings: Settings, echo: Callable[[str], None]) -> bool:
    """Probe every channel without sending anything (see each channel's `probe`)."""
    from pollerd.channels.base import ProbeFailed
    from pollerd.runtime import build_channels

    ok = True
    async with httpx.AsyncClient(headers={"User-Agent": f"pollerd/{__version__}"}) as http:
        channels = build_channels(settings, http)
        try:
            for name, channel in channels.items():
                kind = f"{name} ({channel.kind})"
                try:
                    said = await channel.probe()
                except (ProbeFailed, ValueError) as exc:  # ValueError: e.g. a host IDNA refuses
                    echo(f"✗ channel {kind}: {exc}")
                    ok = False
                    continue
                if said is None:
                    echo(f"- channel {kind}: not probed (no way to test it without sending; "
                         f"pollerd notify-test --channel {name} sends a sample)")  # fmt: skip
                else:
                    echo(f"✓ channel {kind}: {said}")
        finally:
            for channel in channels.values():
                await channel.close()
    return ok


def check_start_points(settings: Settings, echo: Callable[[str], None]) -> bool:
    """A stored start point in the future hides every alert: a failure. A start_from that
    differs from the stored start point has no effect: a warning (the store still polls from
    its stored start point). Read-only: a database that does not exist yet is not created."""
    file = sqlite_file(settings.pollerd.database)
    if file is not None and not file.exists():
        return True
    ok = True
    now = datetime.now(UTC)
    try:
        store = open_store(settings.pollerd.database)  # runs PRAGMA quick_check first
    except DamagedDatabase as exc:
        echo(f"✗ {exc}")
        return False
    try:
        for cfg in settings.stores:
            cursor = store.cursor(cfg.name)
            if cursor is not None and in_future(cursor, now):
                ok = False
                echo(
                    f"✗ {cfg.name}: its start point {cursor.start_at.isoformat()} is in the "
                    "future: nothing alerts until then (move it: pollerd cursor set --store "
                    f"{cfg.name} --start-from now|TIME, with pollerd stopped)"
                )
            problem = mismatch(cfg, cursor) if cursor else None
            if problem:
                echo(f"! warning: {problem}")
    finally:
        store.close()
    return ok


def check_templates(settings: Settings, echo: Callable[[str], None]) -> bool:
    """A user templates folder (`[pollerd] templates`) must render every event type in every
    locale and flavour: a misspelt variable found here is not a fallback in production."""
    from pollerd.templates import templates_for

    folder = settings.pollerd.templates
    if folder is None:
        return True
    store = settings.stores[0].name if settings.stores else "demo-store"
    problems = templates_for(folder).problems(template_samples(store))
    if not problems:
        echo(f"✓ templates: {folder}: every event renders")
        return True
    echo(f"✗ templates: {folder}: {len(problems)} problem(s)")
    for problem in problems:
        echo(f"  {problem}")
    return False


def template_samples(store: str = "demo-store") -> list[dict[str, Any]]:
    """One realistic event JSON per event type (`pollerd.templates.EVENTS`; the digest is
    built from these): what `pollerd check` renders every user template against. Every
    optional field is filled, so a template that uses one is exercised."""
    from pollerd.templates import EVENTS
    from pollerd.templates.reports import sample_report
    from pollerd.templates.seller import sample_figures

    when = datetime(2026, 11, 22, 23, 30, tzinfo=UTC)
    order = replace(
        sample_order(store, when),
        refunded_total=Decimal("10.00"),
        customer_phone="138****5678",
        cancel_reason="customer",
    )
    dispute = {
        "id": "77",
        "status": "NEEDS_RESPONSE",
        "type": "CHARGEBACK",
        "amount": "59.90",
        "currency": "USD",
        "reason": "FRAUDULENT",
        "initiated_at": "2026-11-22T23:30:00Z",
        "evidence_due_by": "2026-12-06",
        "finalized_on": None,
    }
    figures = sample_figures(order.id, str(order.total), order.currency, order.number)
    samples = []
    for kind in EVENTS:
        if kind == "digest":
            continue
        reason = {
            "order.cancelled": "customer",
            "order.deleted": "Order #1001 was deleted.",
            "alert.channel_failing": "channel ops: HTTP 403 (check the key)",
            "alert.store_failing": "HTTP 401 from the store (check consumer_key)",
            "alert.store_recovered": "polling works again after 42 min (17 failed passes)",
            "alert.order_quarantined": "order 1001: field total: not an amount: 'garbage'",
        }.get(kind, "FRAUDULENT" if kind.startswith("dispute.") else None)
        body = None
        if kind.startswith("dispute."):
            body = {**dispute, "status": "UNDER_REVIEW"} if kind.endswith("updated") else dispute
        event = Event(
            kind, store, "woocommerce", order.id, when, when, False, order.to_json(), reason, body
        )
        if kind.startswith("report."):  # a report: its figures, no order (alerts/reports.py)
            group = f"{kind}:2026-11-22"
            event = replace(
                event,
                store="*",
                order_id=group,
                order={"id": group},
                alert_id=f"*:{kind}:2026-11-22@ops",
                report=sample_report(kind),
            )
        # The seller rules' figures (pollerd/alerts), as their `alert` object.
        samples.append(replace(event, alert=figures.get(kind)).to_json())
    return samples


def sample_order(store: str, when: datetime, *, test: bool = False) -> Order:
    """A realistic paid WooCommerce order with three items and a masked customer."""
    return Order(
        store=store,
        platform="woocommerce",
        id="1001",
        number="1001",
        status="processing",
        created_at=when,
        updated_at=when,
        paid_at=when,
        total="59.90",
        currency="USD",
        payment_method="stripe",
        payment_method_title="Credit card",
        test=test,
        refunded_total=Decimal("0"),
        customer_email="j***@example.com",
        customer_name="Jane D.",
        admin_url="https://shop.example.com/wp-admin/admin.php?page=wc-orders&action=edit&id=1001",
        line_items=(
            LineItem("Blue mug", 2, "40.00"),
            LineItem("Earl Grey tea", 1, "9.90"),
            LineItem("Gift wrap", 1, "10.00"),
        ),
    )


def sample_event(store: str = "demo-store") -> Event:
    """A realistic paid order, flagged as a test so routes and people can tell. Its order id
    (`notify-test-<UTC time>-<random>`) is no store's: receivers drop repeated ids, as the
    README tells them to, and a sample sent as `store:1001:order.paid` would make them drop the
    real alert for order 1001 later (and a second test send would not show at all)."""
    now = datetime.now(UTC).replace(microsecond=0)
    test_id = f"notify-test-{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"
    order = replace(sample_order(store, now, test=True), id=test_id, number="TEST", admin_url="")
    return Event("order.paid", store, "woocommerce", order.id, now, now, True, order.to_json())


def readable(rendered: str) -> str:
    """An email as a person reads it (decoded headers and the plain-text part) rather than
    its quoted-printable wire form; any other message as it is."""
    import email
    from email.message import EmailMessage
    from email.policy import default

    if not rendered.startswith(("Subject:", "From:", "To:", "Content-Type:", "MIME-Version:")):
        return rendered
    message = email.message_from_string(rendered, policy=default)
    if not isinstance(message, EmailMessage) or message["Subject"] is None:
        return rendered
    head = [f"{name}: {message[name]}" for name in ("Subject", "From", "To") if message[name]]
    part = message.get_body(preferencelist=("plain", "html"))
    body = part.get_content() if isinstance(part, EmailMessage) else ""
    return "\n".join([*head, "", str(body).rstrip()])


async def preview(settings: Settings, channel: str, kind: str) -> str:
    """What `channel` would send for a sample `kind` event, in its flavour, locale and time
    zone, with the user's templates: rendered exactly as the outbox stores it, sent nowhere.
    Unknown names are usage errors that list the known ones."""
    from pollerd.runtime import build_channels
    from pollerd.templates import EVENTS

    names = [c.name for c in settings.channels]
    if channel not in names:
        known = ", ".join(names) or "none"
        raise UnknownName(f"--channel: no channel named {channel!r} (defined: {known})")
    if kind not in EVENTS:
        raise UnknownName(f"--event: {kind!r} is not an event type (one of: {', '.join(EVENTS)})")
    store = settings.stores[0].name if settings.stores else "demo-store"
    samples = [Event.from_json(sample) for sample in template_samples(store)]
    async with httpx.AsyncClient() as http:  # never used: rendering sends nothing
        channels = build_channels(settings, http)
        try:
            target = channels[channel]
            if kind == "digest":
                return target.render_digest([e for e in samples if e.type.startswith("order.")])
            return target.render(next(e for e in samples if e.type == kind))
        finally:
            for built in channels.values():
                await built.close()


async def send_sample(settings: Settings, channel: str, echo: Callable[[str], None]) -> bool:
    from pollerd.runtime import build_channels

    names = [c.name for c in settings.channels]
    if channel not in names:
        raise PollerdError(f"no channel named {channel!r} (defined: {', '.join(names) or 'none'})")
    async with httpx.AsyncClient(headers={"User-Agent": f"pollerd/{__version__}"}) as http:
        channels = build_channels(settings, http)
        target = channels[channel]
        event = sample_event(settings.stores[0].name if settings.stores else "demo-store")
        result = await target.send(event, target.render(event))
        for ch in channels.values():
            await ch.close()
    if result.kind == "ok":
        # The channel's own word follows ("accepted for 2 recipients", "HTTP 200").
        echo(f"✓ {channel}: sample alert sent" + (f": {result.detail}" if result.detail else ""))
        return True
    extra = f", retry after {result.retry_after:.0f}s" if result.retry_after else ""
    echo(f"✗ {channel}: {result.kind} ({result.scope}{extra}): {result.detail}")
    return False


def retry_target_problem(
    settings: Settings, store: Store, ids: list[int], channel: str | None
) -> str | None:
    """Why `deliveries retry` cannot mean what it was given (an id that is no delivery, a
    channel neither configured nor in the outbox), or None."""
    if channel is not None:
        known = sorted({c.name for c in settings.channels} | set(store.counts()))
        if channel not in known:
            return f"--channel: no channel named {channel!r} (known: {', '.join(known) or 'none'})"
    if ids:
        found = store.known_deliveries(ids)
        missing = [str(i) for i in ids if i not in found]
        if missing:
            return (
                f"no delivery with id {', '.join(missing)} (see `pollerd deliveries list`; "
                "ids are the first column)"
            )
    return None


def list_deliveries(
    settings: Settings, *, dead: bool, channel: str | None, limit: int
) -> list[dict[str, Any]]:
    """The outbox rows, times as ISO 8601 in UTC like `status --json` (the store keeps epoch
    seconds, which a reader of the JSON had to convert by hand)."""
    store = open_store(settings.pollerd.database)
    try:
        rows = store.deliveries(state="dead" if dead else None, channel=channel, limit=limit)
    finally:
        store.close()
    for row in rows:
        now = datetime.now(UTC).timestamp()
        quiet = row.get("quiet_until")
        # Still held by quiet hours (the column stays set once it went out: it was held then).
        row["quiet"] = row["state"] == "pending" and quiet is not None and float(quiet) > now
        for key in ("created_at", "sent_at", "next_at", "quiet_until"):
            if row.get(key) is not None:
                row[key] = _iso(float(row[key]))
    return rows
