"""A third platform, "toy", written the way a plugin author outside pollerd would write one: a
store model, a `Source`, its rules and a `Platform` object, plus the loopback store it talks to
and the rig the source contract suite runs it on. Nothing under `pollerd/` or `pollerd_sim/`
knows of it; it is found only through entry points (`registered()` writes real ones): the
platform in `pollerd.sources`, its rig in `pollerd.source_rigs`.

The toy store's API: `GET /orders?after=<ISO>&page=<n>&by=updated|created` lists
`{"id", "updated_at", "status"}` rows by ascending id, 50 a page, with `next` (or null);
`GET /orders/<id>` is a full order or 404; `GET /` describes the store. Statuses: `pending`,
`paid`, `cancelled`."""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

import httpx

from pollerd.config.models import StoreConfig
from pollerd.config.types import Interval, Overlap, StartFrom, StoreName, Sweep, Timeout
from pollerd.errors import RetryableSourceError
from pollerd.model import Order
from pollerd.sources.base import Listed, ListPage, Malformed, PageToken, Source
from pollerd.sources.plugin import Platform, Sleep, evidence
from pollerd_sim.testing.source_rigs import Build, SourceRig

PER_PAGE = 50
ENTRY_POINT = "toy = tests.support.toyplatform:PLATFORM"
RIG_ENTRY_POINT = "toy = tests.support.toyplatform:contract_rig"


# --- the plugin ---------------------------------------------------------------------------------


class ToyStore(StoreConfig):
    name: StoreName
    platform: Literal["toy"]
    url: str
    interval: Interval = timedelta(seconds=5)
    overlap: Overlap = timedelta(minutes=5)
    start_from: StartFrom = "now"
    timeout: Timeout = timedelta(seconds=10)
    user_agent: str = "pollerd (toy platform)"
    sweep_hourly: Sweep = timedelta(hours=24)
    sweep_daily: Sweep = timedelta(hours=72)
    enabled: bool = True


class ToyRules:
    def implied(self, order: Order, *, known: bool) -> set[str]:
        implied = {"order.created"}
        if order.status == "paid":
            implied.add("order.paid")
        if order.status == "cancelled":
            implied.add("order.cancelled")
        return implied

    def evidence(self, order: Order, kind: str) -> datetime | None:
        return evidence(order, kind)


class ToySource:
    platform = "toy"
    keyset: Literal["id", "updated_at"] = "id"
    throttled = 0  # the toy store never asks for a pause

    def __init__(self, cfg: ToyStore) -> None:
        self.name = cfg.name
        self.http = httpx.AsyncClient(base_url=cfg.url, timeout=cfg.timeout.total_seconds())

    async def _get(self, path: str, **params: Any) -> Any:
        try:
            response = await self.http.get(path, params=params)
        except httpx.TransportError as exc:
            raise RetryableSourceError(self.name, f"toy store unreachable ({exc})") from None
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise RetryableSourceError(self.name, f"toy store answered {response.status_code}")
        return response.json()

    async def check(self) -> str:
        about = await self._get("/")
        return f"toy store {about['name']}: {about['orders']} orders"

    async def probe(self) -> Listed | None:
        return None  # no cheap probe: the sync walks the window every pass

    async def _list(self, by: str, after: datetime, page: PageToken) -> ListPage:
        body = await self._get("/orders", after=after.isoformat(), page=page or 1, by=by)
        rows = [
            Listed(str(r["id"]), datetime.fromisoformat(r["updated_at"]), r["status"])
            for r in body["rows"]
        ]
        return ListPage(rows, body["next"], total=body["total"])

    async def list_modified(
        self, after: datetime, page: PageToken, *, status: str = "any"
    ) -> ListPage:
        return await self._list("updated", after, page)

    async def list_created(self, after: datetime, page: PageToken) -> ListPage:
        return await self._list("created", after, page)

    async def fetch(self, ids: list[str], *, status: str = "any") -> list[Order | Malformed]:
        found: list[Order | Malformed] = []
        for oid in ids:
            body = await self._get(f"/orders/{int(oid)}")
            if body is not None:
                found.append(_order(body, self.name))
        return found

    def budget_used(self) -> float | None:
        return None  # no rate budget to report

    async def aclose(self) -> None:
        await self.http.aclose()


def _order(body: dict[str, Any], store: str) -> Order:
    created = datetime.fromisoformat(body["created_at"])
    paid = body.get("paid_at")
    return Order(
        store=store,
        platform="toy",
        id=str(body["id"]),
        number=str(body["id"]),
        status=body["status"],
        created_at=created,
        updated_at=datetime.fromisoformat(body["updated_at"]),
        total=body["total"],
        currency="EUR",
        paid_at=datetime.fromisoformat(paid) if paid else None,
    )


class Toy(Platform):
    name = "toy"
    config = ToyStore
    terminal = frozenset({"cancelled"})

    def build(self, cfg: Any, *, sleep: Sleep) -> Source:
        return ToySource(cfg)

    def rules(self, cfg: Any | None) -> ToyRules:
        return ToyRules()


PLATFORM = Toy()


# --- its store ----------------------------------------------------------------------------------


class ToySim:
    """The toy store on a loopback port; orders live in memory, dated by the real clock."""

    def __init__(self) -> None:
        self.orders: dict[int, dict[str, Any]] = {}
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> ToySim:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def create_order(self, total: str = "12.50") -> int:
        now = _now()
        with self.lock:
            oid = len(self.orders) + 1
            self.orders[oid] = {"id": oid, "status": "pending", "total": str(Decimal(total)),
                                "created_at": now, "updated_at": now, "paid_at": None}  # fmt: skip
        return oid

    def pay(self, oid: int) -> None:
        now = _now()
        with self.lock:
            self.orders[oid].update(status="paid", paid_at=now, updated_at=now)

    def listing(self, query: dict[str, str]) -> dict[str, Any]:
        after = datetime.fromisoformat(query["after"])
        field = "created_at" if query.get("by") == "created" else "updated_at"
        page = int(query.get("page", "1"))
        with self.lock:
            rows = [o for _, o in sorted(self.orders.items())
                    if datetime.fromisoformat(o[field]) >= after]  # fmt: skip
        chunk = rows[(page - 1) * PER_PAGE : page * PER_PAGE]
        return {
            "rows": [{k: o[k] for k in ("id", "updated_at", "status")} for o in chunk],
            "next": page + 1 if page * PER_PAGE < len(rows) else None,
            "total": len(rows),
        }


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def _handler(sim: ToySim) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            body: Any = None
            if parts.path == "/":
                body = {"name": "toy", "orders": len(sim.orders)}
            elif parts.path == "/orders":
                body = sim.listing(query)
            elif parts.path.startswith("/orders/"):
                body = sim.orders.get(int(parts.path.rsplit("/", 1)[1]))
            data = json.dumps(body).encode()
            self.send_response(404 if body is None else 200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


# --- how the tests find and use it ----------------------------------------------------------------


def install(folder: Path) -> Path:
    """A real distribution's metadata in `folder` declaring the `pollerd.sources` entry point
    and the source contract rig's (`pollerd.source_rigs`), as `pip install` of a package named
    toy-platform would write them; `folder` goes on the path."""
    info = folder / "toy_platform-0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-platform\nVersion: 0\n")
    (info / "entry_points.txt").write_text(
        f"[pollerd.sources]\n{ENTRY_POINT}\n\n[pollerd.source_rigs]\n{RIG_ENTRY_POINT}\n"
    )
    return folder


@contextlib.contextmanager
def registered() -> Iterator[Path]:
    """The toy platform installed for the time of the block, in this process (and, through
    `PYTHONPATH`, in `pollerd` subprocesses given the folder it yields)."""
    from pollerd.sources import PLATFORMS
    from pollerd_sim.testing.source_rigs import SOURCE_RIGS

    with tempfile.TemporaryDirectory() as tmp:
        folder = str(install(Path(tmp)))
        sys.path.append(folder)
        PLATFORMS.forget()
        SOURCE_RIGS.forget()
        try:
            yield Path(folder)
        finally:
            sys.path.remove(folder)
            PLATFORMS.forget()
            SOURCE_RIGS.forget()


@contextlib.contextmanager
def contract_rig(build: Build) -> Iterator[SourceRig]:
    """This platform's rig for the source contract suite; `build` makes the source from the
    store config (the suite passes the registry's, so the entry point is what is tested)."""
    with ToySim() as sim:
        cfg = ToyStore(name="shop", platform="toy", url=sim.url)
        yield SourceRig(
            make=lambda: build(cfg), create=sim.create_order, pay=sim.pay, paid_status="paid"
        )
