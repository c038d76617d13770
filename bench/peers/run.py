"""Peers side by side: open-source order syncers and pollerd over the same scripted history.

    python bench/peers/run.py [--tools airbyte,tap-woocommerce,tap-woocommerce-v3,pollerd]
                              [--controls] [--venv-dir ~/.cache/pollerd-peers] [--markdown]

Each peer runs from a virtual environment of its own under `--venv-dir` (created and
pip-installed at the pinned version on first use; never in the repository, never a pollerd
dependency) as its own CLI, from its own saved state, four times: the initial sync and three
incremental ones, around the history in `peers_history.py` (UTC+8 store, status changes of
old orders, 250 orders in one second with a read landing mid-second). pollerd runs
`pollerd once` at the same moments with a webhook sink. Every tool has a store of its own
(same script) behind a TLS-terminating loopback proxy; requests are counted at the store.

Prints one JSON object; `--markdown` prints the table instead (`table(results)`, which
bench/run-all imports). Comparison rules: `peers_truth.py`.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers_history import (
    BURST,
    SITE_TIMEZONE,
    Burst,
    HistorySim,
    Steps,
    check_truth,
    next_second,
    t0,
    t1,
)
from peers_shopify import INDEX_LAG_S, PollerdShopify, ShopStore, TapShopify, script
from peers_tls import TlsProxy, make_certificate
from peers_tools import (
    DEFAULT_VENV_ROOT,
    PINS,
    AirbyteSource,
    SingerTap,
    SyncRun,
    ensure_venv,
)
from peers_truth import score, visible_changes

from pollerd_sim import WebhookSink
from pollerd_sim.harness import KEY, SECRET, SHOPIFY_TOKEN, pollerd, pollerd_env, write_config
from pollerd_sim.wc_rest import ORDERS_PREFIX

WOO_TOOLS = ("airbyte", "tap-woocommerce", "tap-woocommerce-v3", "pollerd")
SHOP_TOOLS = ("tap-shopify", "pollerd-shopify")
# Counterfactual runs (research/peers-measured.md "Controls"): the tap configured around its
# time-zone defect, to show what its created-date cursor and strict `after` lose on their own.
CONTROLS = {
    "tap-woocommerce+naive-start": ("tap-woocommerce", SITE_TIMEZONE, "T00:00:00"),
    "tap-woocommerce-v3+utc-site": ("tap-woocommerce-v3", "UTC", "T00:00:00Z"),
}
CURSORS = {
    "airbyte": "date_modified_gmt, naive UTC + dates_are_gmt, window end = client now",
    "tap-woocommerce": "max date_created (site-local) re-labelled with start_date's +00:00",
    "tap-woocommerce-v3": "max date_created (site-local) with a hard-coded Z",
    "pollerd": "(date_modified_gmt, id) from data, naive UTC + dates_are_gmt, 5 min overlap",
    "tap-shopify": "min(now, max updatedAt), bulk query updated_at >= bookmark, < client now",
    "pollerd-shopify": "(updatedAt, id) from data, overlap, probe + sweeps (GraphQL)",
}


class Tool(Protocol):
    def prepare(self, cert: Path) -> None: ...

    def sync(self, cert: Path) -> SyncRun: ...


class PollerdOnce:
    """`pollerd once` with a webhook sink: what it captured is the events' order statuses."""

    def __init__(self, work: Path, url: str, start: str) -> None:
        self.work = work
        self.sink = WebhookSink().start()
        self.config = write_config(
            work, url, self.sink.url, store={"start_from": start, "interval": "10s"}
        )
        self.seen = 0

    def prepare(self, cert: Path) -> None:
        """Nothing to discover: the config is the whole setup."""

    def sync(self, cert: Path) -> SyncRun:
        started = time.monotonic()
        env = pollerd_env(SSL_CERT_FILE=str(cert))
        proc = pollerd("once", "--config", str(self.config), env=env, cwd=self.work)
        run = SyncRun(exit_code=proc.returncode, wall_s=round(time.monotonic() - started, 2))
        run.stderr_tail = "\n".join(proc.stderr.strip().splitlines()[-3:])
        run.secret_in_log_lines = sum(SECRET in line for line in proc.stderr.splitlines())
        receipts = [r for r in self.sink.receipts if r.status == 200]
        for receipt in receipts[self.seen :]:
            order = receipt.json().get("order") or {}
            run.pairs.append((int(order["id"]), str(order["status"])))
        self.seen = len(receipts)
        return run

    def close(self) -> None:
        self.sink.stop()


def make_tool(
    name: str, venv_root: Path, work: Path, url: str, day: str, *, airbyte_ca_env_only: bool = False
) -> tuple[Tool, float]:
    """The tool, configured as its docs say for this store (a control as its entry in
    `CONTROLS` says); and its install seconds."""
    start_suffix = CONTROLS[name][2] if name in CONTROLS else "T00:00:00Z"
    name = CONTROLS[name][0] if name in CONTROLS else name
    if name == "pollerd":
        return PollerdOnce(work, url, f"{day}T00:00:00Z"), 0.0
    host = urllib.parse.urlsplit(url).netloc
    if name == "airbyte":
        venv, spent = ensure_venv("airbyte-source-woocommerce", venv_root)
        config = {"shop": host, "api_key": KEY, "api_secret": SECRET, "start_date": day}
        return AirbyteSource(venv, work, config, ca_in_certifi=not airbyte_ca_env_only), spent
    venv, spent = ensure_venv(name, venv_root)
    config = {
        # tap-woocommerce appends "wp-json/..." to the URL; v3 prepends "https://" itself.
        "url": url + "/" if name == "tap-woocommerce" else host,
        "consumer_key": KEY,
        "consumer_secret": SECRET,
        "start_date": day + start_suffix,  # `Z`: the usual Singer form
    }
    return SingerTap(name, venv, work, config), spent


def _v2_as_v3(path: str) -> str:
    return path.replace("/wp-json/wc/v2/", "/wp-json/wc/v3/", 1)


def run_tool(
    name: str,
    venv_root: Path,
    work: Path,
    cert: Path,
    key: Path,
    *,
    airbyte_ca_env_only: bool = False,
) -> dict[str, Any]:
    """The whole history for one tool on a store of its own; the tool's row of the results."""
    proxy = TlsProxy(cert, key, path_map=_v2_as_v3)
    sim = HistorySim(
        consumer_key=KEY,
        consumer_secret=SECRET,
        site_timezone=CONTROLS[name][1] if name in CONTROLS else SITE_TIMEZONE,
        https_detected=True,
        home_url=proxy.url,
    ).start()
    proxy.start(sim.port)
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    tool, install_s = make_tool(
        name, venv_root, work, proxy.url, day, airbyte_ca_env_only=airbyte_ca_env_only
    )
    try:
        tool.prepare(cert)
        steps = Steps()
        runs: list[SyncRun] = []
        marks: list[int] = []

        def sync() -> None:
            marks.append(len(sim.request_log))
            runs.append(tool.sync(cert))

        made = t0(sim, steps)
        steps.boundaries.append(len(steps.writes))
        sync()
        t1(sim, steps, made)
        steps.boundaries.append(len(steps.writes))
        sync()
        burst = Burst(steps)
        next_second()  # the burst's second is none of T1's (a tap's bookmark second)
        sim.arm(burst)
        sync()
        if sim.disarm() is not None:  # the tool never listed orders: the burst still happens
            steps.boundaries.append(len(steps.writes))
            burst.write(sim, BURST, "burst, no read landed")
        else:
            steps.boundaries.append(burst.read_at or 0)
            sim.finish(burst)
        steps.boundaries.append(len(steps.writes))
        sync()
        marks.append(len(sim.request_log))
        problems = check_truth(sim, steps)
        log = list(sim.request_log)
    finally:
        if isinstance(tool, PollerdOnce):
            tool.close()
        proxy.stop()
        sim.stop()
    truth = visible_changes(steps.writes, steps.boundaries)
    observed = [pair for run in runs for pair in run.pairs]
    requests = [marks[i + 1] - marks[i] for i in range(len(runs))]
    return {
        "tool": name,
        "version": "(this tree)" if name == "pollerd" else PINS[_package(name)],
        "cursor": CURSORS[CONTROLS[name][0] if name in CONTROLS else name],
        "site_timezone": CONTROLS[name][1] if name in CONTROLS else SITE_TIMEZONE,
        **score(truth, observed),
        "emitted": [len(run.pairs) for run in runs],
        "requests": requests,
        "bytes": sum(entry["bytes"] for entry in log[marks[0] :]),
        "request_kinds": _woo_kinds(log[marks[0] :]),
        "wall_s": [run.wall_s for run in runs],
        "exit_codes": [run.exit_code for run in runs],
        "first_list_query": [_first_list_query(log[marks[i] : marks[i + 1]]) for i in range(4)],
        "secret_in_log_lines": sum(run.secret_in_log_lines for run in runs),
        "errors": [run.stderr_tail for run in runs if run.exit_code != 0],
        "state_after_sync": [_bookmark(run.state) for run in runs],
        "install_s": round(install_s, 1),
        "script_problems": problems,
    }


def _package(name: str) -> str:
    name = CONTROLS[name][0] if name in CONTROLS else name
    return "airbyte-source-woocommerce" if name == "airbyte" else name


def _bookmark(state: Any) -> str:
    """A peer's saved state after a sync, short (pollerd keeps its cursor in SQLite: "")."""
    if state is None:
        return ""
    text = json.dumps(state, separators=(",", ":"))
    for key in ("last_update", "date_modified_gmt"):
        found = re.search(rf'"{key}":"([^"]*)"', text)
        if found:
            return f"{key}={found.group(1)}"
    return text[:120]


def _woo_kinds(entries: list[dict[str, Any]]) -> dict[str, int]:
    """What the requests were for: the route, and the list arguments that say why."""
    kinds: dict[str, int] = {}
    for entry in entries:
        params = entry["params"]
        label = entry["path"].removeprefix("/wp-json/wc/v3/")
        for arg in ("status", "include", "_fields", "modified_after", "after"):
            if arg in params:
                label += f" {arg}" + ("=" + params[arg][0] if arg == "status" else "")
        kinds[label] = kinds.get(label, 0) + 1
    return dict(sorted(kinds.items()))


def _first_list_query(entries: list[dict[str, Any]]) -> str:
    """The date filters of the first orders list request, as the store received them."""
    for entry in entries:
        if entry["path"] == ORDERS_PREFIX and entry["method"] == "GET":
            params = entry["params"]
            keys = ("after", "modified_after", "modified_before", "dates_are_gmt", "orderby")
            return "&".join(f"{k}={params[k][0]}" for k in keys if k in params)
    return ""


def run_shopify(
    name: str, venv_root: Path, work: Path, cert: Path, key: Path, bulk_seconds: float = 0.0
) -> dict[str, Any]:
    """The Shopify history (`peers_shopify.py`) for one tool on a store of its own.
    `bulk_seconds`: how long a bulk operation runs (tap-shopify polls one, then sleeps 60 s)."""
    proxy = TlsProxy(cert, key)
    sim = ShopStore(
        access_token=SHOPIFY_TOKEN, index_lag=INDEX_LAG_S, bulk_seconds=bulk_seconds
    ).start()
    proxy.start(sim.port)
    install_s = 0.0
    tool: Tool
    if name == "tap-shopify":
        venv, install_s = ensure_venv("tap-shopify", venv_root)
        tool = TapShopify(venv, work, proxy.port)
    else:
        tool = PollerdShopify(work, sim.url)
    runs: list[SyncRun] = []
    marks: list[int] = []
    writes: list[tuple[int, str, str]] = []

    def sync() -> None:
        marks.append(sim.requests)
        runs.append(tool.sync(cert))

    try:
        tool.prepare(cert)
        first = len(sim.request_log)
        boundaries = script(sim, sync, writes)
        marks.append(sim.requests)
        kinds: dict[str, int] = {}
        for entry in sim.request_log[first:]:
            kinds[entry["query_kind"]] = kinds.get(entry["query_kind"], 0) + 1
    finally:
        if isinstance(tool, PollerdShopify):
            tool.close()
        proxy.stop()
        sim.stop()
    truth = visible_changes(writes, boundaries)
    observed = [pair for run in runs for pair in run.pairs]
    return {
        "tool": name,
        "version": "(this tree)" if name == "pollerd-shopify" else PINS["tap-shopify"],
        "cursor": CURSORS[name],
        "index_lag_s": INDEX_LAG_S,
        "request_kinds": dict(sorted(kinds.items())),
        "unlogged_requests": sim.unlogged,
        "bulk_seconds": bulk_seconds,
        **score(truth, observed),
        "emitted": [len(run.pairs) for run in runs],
        "requests": [marks[i + 1] - marks[i] for i in range(len(runs))],
        "wall_s": [run.wall_s for run in runs],
        "exit_codes": [run.exit_code for run in runs],
        "first_list_query": ["", "", ""],
        "secret_in_log_lines": sum(run.secret_in_log_lines for run in runs),
        "errors": [run.stderr_tail for run in runs if run.exit_code != 0],
        "install_s": round(install_s, 1),
    }


def table(results: dict[str, Any]) -> str:
    """The markdown tables of a run's results: WooCommerce, then Shopify (one row per tool)."""
    parts = []
    if results.get("tools"):
        parts.append(
            f"WooCommerce, site time zone {results['site_timezone']}, 4 syncs:\n\n"
            + _rows(results["tools"], query=True)
        )
    if results.get("shopify"):
        parts.append(
            f"Shopify, search index lag {results['shopify_index_lag_s']:g} s, 3 syncs:\n\n"
            + _rows(results["shopify"], query=False)
        )
    return "\n".join(parts)


def _rows(rows: list[dict[str, Any]], *, query: bool) -> str:
    head = (
        "| tool | version | orders captured | status changes captured | missed, by step "
        "| requests per sync | wall s per sync |"
        + (" sync 2 date filters |" if query else "")
        + "\n| --- | --- | --- | --- | --- | --- | --- |"
        + (" --- |" if query else "")
        + "\n"
    )
    lines = []
    for row in rows:
        missed = ", ".join(f"{k}: {v}" for k, v in row["missed_by_step"].items()) or "none"
        if row.get("errors"):
            missed += f"; exit codes {row['exit_codes']}"
        line = (
            f"| {row['tool']} | {row['version']} "
            f"| {row['orders_captured']} / {row['orders_truth']} "
            f"| {row['changes_captured']} / {row['changes_truth']} | {missed} "
            f"| {' / '.join(map(str, row['requests']))} "
            f"| {' / '.join(f'{w:.1f}' for w in row['wall_s'])} |"
        )
        if query:
            line += f" `{row['first_list_query'][1] or '-'}` |"
        lines.append(line)
    return head + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None, *, progress: Callable[[str], None] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tools", default=",".join([*WOO_TOOLS, *SHOP_TOOLS]))
    parser.add_argument("--venv-dir", type=Path, default=DEFAULT_VENV_ROOT)
    parser.add_argument(
        "--controls", action="store_true", help="add the counterfactual tap runs (CONTROLS)"
    )
    parser.add_argument(
        "--shopify-bulk-seconds",
        type=float,
        default=0.0,
        help="how long a simulated bulk operation runs (default 0: done at tap-shopify's first "
        "poll; any longer and it sleeps 60 s before the next poll, every sync)",
    )
    parser.add_argument(
        "--airbyte-ca-env-only",
        action="store_true",
        help="give Airbyte the CA through REQUESTS_CA_BUNDLE/SSL_CERT_FILE only, not its certifi "
        "bundle (reproduces its TLS failure: each sync fails after ~35 s of retries)",
    )
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    say = progress or (lambda text: print(text, file=sys.stderr, flush=True))
    names = [n.strip() for n in args.tools.split(",") if n.strip()]
    if args.controls:
        names += [n for n in CONTROLS if n not in names]
    known = [*WOO_TOOLS, *CONTROLS, *SHOP_TOOLS]
    unknown = sorted(set(names) - set(known))
    if unknown:
        parser.error(f"no such tool {unknown}; known: {', '.join(known)}")
    started = time.monotonic()
    rows, shop_rows = [], []
    venvs = args.venv_dir.expanduser()
    with tempfile.TemporaryDirectory(prefix="pollerd-peers-") as tmp:
        cert, key = make_certificate(Path(tmp) / "tls", ("acme.myshopify.com",))
        for name in names:
            say(f"peers: {name} ...")
            if name in SHOP_TOOLS:
                shop_rows.append(
                    run_shopify(name, venvs, Path(tmp) / name, cert, key, args.shopify_bulk_seconds)
                )
            else:
                rows.append(
                    run_tool(
                        name,
                        venvs,
                        Path(tmp) / name,
                        cert,
                        key,
                        airbyte_ca_env_only=args.airbyte_ca_env_only,
                    )
                )
    results = {
        "benchmark": "peers",
        "site_timezone": SITE_TIMEZONE,
        "tools": rows,
        "shopify": shop_rows,
        "shopify_index_lag_s": INDEX_LAG_S,
        "wall_s": round(time.monotonic() - started, 1),
    }
    print(table(results) if args.markdown else json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
