"""One contract every order source keeps, run against each source and its simulator: what the
sync loop relies on, whatever the platform (STYLE.md: "one parametrised contract suite every
source must pass").

`SourceContract` is the suite, a pytest class to subclass in a test module; the subclass gives
the `source_rig` fixture, a `SourceRig` (`pollerd_sim.testing.source_rigs`). pollerd's own
tests/contract/test_sources.py subclasses it over every platform the `pollerd.sources` entry
points register, each with the rigs `SOURCE_RIGS` finds for it (the built-in ones, and the
`pollerd.source_rigs` entry points of other distributions); a platform without a rig fails,
naming what to add. A platform in another repository runs it in its own tests:

    from pollerd_sim.testing import SourceContract, open_rig

    class TestMagento(SourceContract):
        @pytest.fixture
        def source_rig(self) -> Iterator[SourceRig]:
            with open_rig("magento") as rig:  # its registered platform and declared rig
                yield rig

It imports pytest, a test extra; nothing outside the tests imports it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from pollerd.sources.base import Listed, ListPage, Source
from pollerd_sim.testing.source_rigs import SourceRig


def run(rig: SourceRig, body: Callable[[Source], Awaitable[Any]]) -> Any:
    """`body` on a fresh source, closed afterwards, in an event loop of its own."""

    async def main() -> Any:
        source = rig.make()
        try:
            return await body(source)
        finally:
            await source.aclose()

    return asyncio.run(main())


async def walk(source: Source, after: datetime) -> list[Listed]:
    """Every row of the listing of changes after `after`, page by page."""
    rows: list[Listed] = []
    page: int | str | None = None
    while True:
        listing: ListPage = await source.list_modified(after, page)
        rows.extend(listing.rows)
        if listing.next is None:
            return rows
        page = listing.next


class SourceContract:
    """The suite; a subclass gives the `source_rig` fixture (see the module docstring)."""

    def test_check_describes_the_store(self, source_rig: SourceRig) -> None:
        text = run(source_rig, lambda s: s.check())
        assert isinstance(text, str) and text.strip()

    def test_listing_pages_cover_every_order_once(self, source_rig: SourceRig) -> None:
        ids = {str(source_rig.create()) for _ in range(120)}
        after = datetime.now(UTC) - timedelta(hours=1)
        rows = run(source_rig, lambda s: walk(s, after))
        assert sorted(r.id for r in rows) == sorted(ids)
        assert all(r.updated_at.tzinfo is not None for r in rows)

    def test_listed_status_matches_the_fetched_order(self, source_rig: SourceRig) -> None:
        unpaid, paid = source_rig.create(), source_rig.create()
        source_rig.pay(paid)
        after = datetime.now(UTC) - timedelta(hours=1)

        async def body(source: Source) -> tuple[list[Listed], list[Any]]:
            rows = await walk(source, after)
            return rows, await source.fetch([r.id for r in rows])

        rows, orders = run(source_rig, body)
        by_id = {o.id: o for o in orders}
        assert set(by_id) == {str(unpaid), str(paid)}
        for row in rows:
            order = by_id[row.id]
            assert row.status == order.status and row.updated_at == order.updated_at
        assert by_id[str(paid)].status == source_rig.paid_status

    def test_fetch_skips_unknown_ids(self, source_rig: SourceRig) -> None:
        known = source_rig.create()
        orders = run(source_rig, lambda s: s.fetch([str(known), "999999999999999"]))
        assert [o.id for o in orders] == [str(known)]

    def test_listing_window_excludes_older_changes(self, source_rig: SourceRig) -> None:
        source_rig.create()
        later = datetime.now(UTC) + timedelta(hours=1)
        assert run(source_rig, lambda s: walk(s, later)) == []

    def test_probe_reports_the_newest_change_or_nothing(self, source_rig: SourceRig) -> None:
        first = source_rig.create()
        newest = run(source_rig, lambda s: s.probe())
        if newest is not None:  # sources without a cheap probe return None: always walk
            assert newest.id == str(first)
