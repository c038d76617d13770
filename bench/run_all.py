"""Every published figure, regenerated on this machine, and `bench/README.md` written from them.

    python bench/run_all.py                     # all of it (under 15 minutes on 2 cores)
    python bench/run_all.py --only latency,faults   # re-run some; the rest from bench/results.json
    python bench/run_all.py --render            # rewrite bench/README.md from bench/results.json

Each step is one of the benchmarks beside this file (or the fault suite, or the peers), run as
a subprocess with this interpreter; its JSON goes into `bench/results.json` under the step's
name with the command, the seconds it took and its exit code, so a figure in the README can
always be traced to the command that printed it. Steps that measure time run one at a time;
the idle-budget steps, which count requests and bytes and barely use the CPU, run beside the
latency steps to keep the whole run short. A step that fails is recorded as failed (with the
end of its stderr) and the rest go on; the exit code is 1 if any failed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results.json"
README = BENCH / "README.md"


@dataclass(frozen=True)
class Step:
    name: str
    argv: tuple[str, ...]  # after the interpreter
    beside: bool = False  # runs in parallel with the timed steps (counts, not seconds)
    timeout: float = 600.0


STEPS: tuple[Step, ...] = (
    Step(
        "idle_woocommerce_10s",
        ("bench/idle_budget.py", "--interval", "10s", "--minutes", "3"),
        beside=True,
    ),
    Step(
        "idle_woocommerce_1s",
        ("bench/idle_budget.py", "--interval", "1s", "--minutes", "1"),
        beside=True,
    ),
    Step("idle_shopify", ("bench/shopify_budget.py", "--seconds", "120"), beside=True),
    Step(
        "latency_woocommerce", ("bench/latency.py", "--platform", "woocommerce", "--changes", "100")
    ),
    Step("latency_shopify", ("bench/latency.py", "--platform", "shopify", "--changes", "100")),
    Step(
        "backfill_shopify_bulk",
        ("bench/backfill.py", "--platform", "shopify", "--mode", "bulk", "--orders", "20000"),
    ),
    Step("backfill_woocommerce", ("bench/backfill.py", "--orders", "20000")),
    Step(
        "backfill_shopify_pages",
        ("bench/backfill.py", "--platform", "shopify", "--mode", "pages", "--orders", "2000"),
    ),
    Step("rules", ("bench/rules.py", "--orders", "100000", "--passes", "100", "--busy", "20")),
    Step("crypto", ("bench/crypto.py", "--rounds", "50000")),
    Step("channels", ("bench/channels.py", "--messages", "100")),
    Step("idle_rss", ("bench/idle_rss.py", "--stores", "1,10", "--idle", "15")),
    Step(
        "faults",
        ("-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/fault"),  # pyproject's -n auto
        timeout=900.0,
    ),
    Step("peers", ("bench/peers/run.py", "--controls"), timeout=900.0),
)


def run_step(step: Step) -> dict[str, Any]:
    """One step as a subprocess; its figures are the last JSON object it prints (the fault
    suite's come from its JUnit XML instead)."""
    argv = [sys.executable, *step.argv]
    junit = None
    if step.name == "faults":
        junit = Path(tempfile.mkstemp(prefix="pollerd-faults-", suffix=".xml")[1])
        argv.append(f"--junitxml={junit}")
    if not (ROOT / step.argv[0]).exists() and step.argv[0] != "-m":
        return {"ok": False, "skipped": f"{step.argv[0]} is not in this checkout"}
    started = time.monotonic()
    try:
        done = subprocess.run(
            argv, cwd=ROOT, capture_output=True, text=True, timeout=step.timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return {
            "ok": False,
            "command": _shown(step),
            "error": f"timed out after {step.timeout:.0f} s",
        }
    seconds = round(time.monotonic() - started, 1)
    entry: dict[str, Any] = {"command": _shown(step), "seconds": seconds, "exit": done.returncode}
    if junit is not None:
        entry["figures"] = fault_figures(junit)
        junit.unlink(missing_ok=True)
    else:
        entry["figures"] = _last_json(done.stdout)
    entry["ok"] = done.returncode == 0 and entry["figures"] is not None
    if not entry["ok"]:
        entry["stderr"] = done.stderr[-1500:]
    return entry


def _shown(step: Step) -> str:
    return "python " + " ".join(step.argv)


def _last_json(text: str) -> Any:
    """The last JSON document a bench printed (some print one object over several lines)."""
    text = text.strip()
    for start in [i for i, c in enumerate(text) if c == "{" and (i == 0 or text[i - 1] == "\n")][
        ::-1
    ]:
        try:
            return json.loads(text[start:])
        except json.JSONDecodeError:
            continue
    return None


def fault_rows() -> list[tuple[str, str, list[str]]]:
    """(row, scenario, tests) from the map in tests/fault/README.md, so that a row added there
    appears here without editing this script. A test is `test_x.py` (the whole file) or
    `test_x.py::test_y` (that test and its parameters), from any cell of the row (the broken
    variant's self-test is often named in the last)."""
    rows = []
    text = (ROOT / "tests/fault/README.md").read_text()
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not re.fullmatch(r"\d+|—", cells[0]):
            continue
        text = " ".join(cells[2:])
        named = re.findall(r"(test_\w+\.py)(?:::(test_\w+))?", text)
        tests = [f"{file}::{name}" if name else file for file, name in named]
        # a bare test name (a self-test in the broken-variant cell) is in one of the row's files
        files = dict.fromkeys(file for file, _ in named)
        bare = re.findall(r"(?<![\w:])(test_\w+)\b(?!\.py)", text)
        tests += [f"{file}::{name}" for name in bare for file in files]
        rows.append((cells[0], cells[1], list(dict.fromkeys(tests))))
    return rows


def fault_figures(junit: Path) -> dict[str, Any]:
    """Every test of the run: `file::name`, seconds, and whether it failed; and the totals."""
    try:
        tree = ET.parse(junit)  # noqa: S314  (pytest's own file, written just now)
    except (ET.ParseError, OSError):
        return {}
    cases = []
    for case in tree.iter("testcase"):
        parts = (case.get("classname") or "").split(".")
        module = next((part for part in parts if part.startswith("test_")), "?") + ".py"
        failed = case.find("failure") is not None or case.find("error") is not None
        cases.append(
            {
                "test": f"{module}::{case.get('name')}",
                "seconds": round(float(case.get("time") or 0), 1),
                "outcome": "failed"
                if failed
                else ("skipped" if case.find("skipped") is not None else "passed"),
            }
        )
    return {
        "cases": cases,
        "tests": len(cases),
        "failed": sum(c["outcome"] == "failed" for c in cases),
    }


def _matches(test: str, wanted: str) -> bool:
    if "::" not in wanted:
        return test.split("::")[0] == wanted
    return test == wanted or test.startswith(wanted + "[")


# ---------------------------------------------------------------------------------- rendering


def _fig(results: dict[str, Any], name: str) -> dict[str, Any]:
    return (results.get(name) or {}).get("figures") or {}


def _cmd(results: dict[str, Any], *names: str) -> str:
    shown = [results[n]["command"] for n in names if results.get(n, {}).get("command")]
    return "\n".join(f"    {c}" for c in shown)


def _n(value: Any, digits: int = 0) -> str:
    if value is None:
        return "—"
    if isinstance(value, float | int) and not isinstance(value, bool):
        return f"{value:,.{digits}f}"
    return str(value)


def render_latency(results: dict[str, Any]) -> str:
    lines = [
        "| platform | interval | changes | delivered | p50 | p95 | p99 | max |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in ("latency_woocommerce", "latency_shopify"):
        f = _fig(results, name)
        if f:
            lines.append(
                f"| {f['platform']} | {f['interval']} | {f['changes']} | {f['delivered']} | "
                f"{f['p50_s']} s | {f['p95_s']} s | {f.get('p99_s', '—')} s | {f['max_s']} s |"
            )
    return "\n".join(lines) + "\n\n" + _cmd(results, "latency_woocommerce", "latency_shopify")


def render_idle(results: dict[str, Any]) -> str:
    lines = ["| store | interval | requests / h | bytes / h | errors |", "|---|---|---|---|---|"]
    for name in ("idle_woocommerce_10s", "idle_woocommerce_1s"):
        f = _fig(results, name)
        if f:
            lines.append(
                f"| WooCommerce | {f['interval']} | {_n(f['requests_per_hour'])} | "
                f"{_n(f['bytes_per_hour'] / 1000)} KB | {f['errors']} |"
            )
    f = _fig(results, "idle_shopify")
    shop = ""
    if f:
        per_hour = 3600 / f["seconds"]
        lines.append(
            f"| Shopify | {f['interval']} | {_n(f['requests'] * per_hour)} | — | "
            f"{f['throttled']} throttled |"
        )
        shop = (
            f"\nShopify idle: {f['points_per_s']} cost points/s, "
            f"{f['share_of_100_per_s'] * 100:.2f} % of the Standard plan's 100 points/s.\n"
        )
    return (
        "\n".join(lines)
        + "\n"
        + shop
        + "\n"
        + _cmd(results, "idle_woocommerce_10s", "idle_woocommerce_1s", "idle_shopify")
    )


def render_backfill(results: dict[str, Any]) -> str:
    lines = [
        "| case | orders | wall | orders/s | ingest orders/s | CPU | peak RSS | requests "
        "| of API ceiling |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    labels = {
        "backfill_shopify_bulk": "Shopify bulk export",
        "backfill_woocommerce": "WooCommerce pages",
        "backfill_shopify_pages": "Shopify pages",
    }
    for name, label in labels.items():
        f = _fig(results, name)
        if f:
            ceiling = f.get("of_api_ceiling")
            lines.append(
                f"| {label} | {_n(f['orders'])} | {f['wall_s']} s | {_n(f['orders_per_s'])} | "
                f"{_n(f.get('ingest_orders_per_s'))} | {f['cpu_s']} s | {f['peak_rss_mib']} MiB | "
                f"{_n(f['http_requests'])} | "
                f"{'—' if ceiling is None else f'{ceiling * 100:.1f} %'} |"
            )
    return "\n".join(lines) + "\n\n" + _cmd(results, *labels)


def render_faults(results: dict[str, Any]) -> str:
    f = _fig(results, "faults")
    cases = f.get("cases") or []
    lines = ["| row | scenario | tests | failed | seconds |", "|---|---|---|---|---|"]
    for row, scenario, wanted in fault_rows():
        counted = [c for c in cases if any(_matches(c["test"], w) for w in wanted)]
        if not counted:
            continue
        lines.append(
            f"| {row} | {scenario} | {len(counted)} | "
            f"{sum(c['outcome'] == 'failed' for c in counted)} | "
            f"{sum(c['seconds'] for c in counted):.1f} |"
        )
    entry = results.get("faults") or {}
    total = (
        f"\n{f.get('tests', 0)} tests in all, {f.get('failed', 0)} failed, "
        f"{entry.get('seconds', '—')} s wall (two workers per core); seconds per row are the sum "
        "of its tests' own times.\n"
    )
    return "\n".join(lines) + "\n" + total + "\n" + _cmd(results, "faults")


def render_peers(results: dict[str, Any]) -> str:
    f = _fig(results, "peers")
    if not f:
        entry = results.get("peers") or {}
        why = entry.get("skipped") or entry.get("error") or "failed"
        return f"Not measured in this run ({why}).\n"
    sys.path.insert(0, str(BENCH / "peers"))
    try:
        from run import table  # type: ignore[import-not-found]  # bench/peers/run.py
    finally:
        sys.path.pop(0)
    return table(f) + "\n\n" + _cmd(results, "peers")


def render_other(results: dict[str, Any]) -> str:
    out = []
    f = _fig(results, "rules")
    if f:
        wired, busy = f.get("steady_pass_ms") or {}, f.get("busy_pass_ms") or {}
        out.append(
            f"- Seller rules after each pass, one store with {_n(f.get('orders'))} stored orders "
            f"({f.get('backend')}): {wired.get('median')} ms median, {wired.get('p95')} ms p95; "
            f"a busy pass {busy.get('median')} ms median (goal < {f.get('goal_ms')} ms)."
        )
    f = _fig(results, "crypto")
    if f:
        out.append(
            f"- AES-256-GCM on a 48-byte PII field: seal {f.get('seal_us')} µs, open "
            f"{f.get('open_us')} µs; a page of {f.get('page_orders')} orders commits in "
            f"{f.get('page_commit_ms_with_pii_key')} ms sealed vs "
            f"{f.get('page_commit_ms_without_pii_key')} ms plain."
        )
    f = _fig(results, "idle_rss")
    for run in f.get("runs") or []:
        out.append(
            f"- Idle `pollerd run` with {run['stores']} store(s): {run['rss_mib_after_idle']} MiB "
            f"RSS, {run['peak_mib']} MiB peak."
        )
    f = _fig(results, "channels")
    if f:
        sends = {k: v for k, v in f.items() if isinstance(v, dict) and "messages_per_s" in v}
        if sends:
            slowest = min(sends, key=lambda k: sends[k]["messages_per_s"])
            out.append(
                f"- Channels, render + send to their loopback fakes: {len(sends)} channels, "
                f"the slowest ({slowest}) {sends[slowest]['messages_per_s']} messages/s, "
                f"at most {max(v['cpu_ms_per_message'] for v in sends.values())} ms CPU a message."
            )
        burst = f.get("burst_wecom") or {}
        if burst:
            out.append(
                f"- Flash sale of {burst['events']} orders to one WeCom group (20 messages/min): "
                f"{burst['messages_sent']} messages ({burst['digests']} digests), "
                f"{burst['refused_by_wecom']} refused, all {burst['rows_sent']} alerts sent."
            )
    return "\n".join(out) + "\n\n" + _cmd(results, "rules", "crypto", "idle_rss", "channels")


def render(results: dict[str, Any], meta: dict[str, Any]) -> str:
    sections: list[tuple[str, str, Callable[[dict[str, Any]], str]]] = [
        (
            "Detection latency",
            "From an order change becoming visible in the simulated store to the signed webhook "
            "at the receiver, through a real `pollerd run` (half new orders, half payments, at "
            "random phases of the poll cycle). Shopify's own webhooks: median about 1.4 s.",
            render_latency,
        ),
        (
            "Idle budget",
            "What a real `pollerd run` spends on a store where nothing happens, extrapolated to "
            "an hour from the simulator's request log. The simulator answers with WordPress's "
            "own headers; a real WooCommerce 10.0.2 measured 3,465 requests and 2.0 MB an hour "
            "at 1 s, 410 requests at 10 s.",
            render_idle,
        ),
        (
            "Backfill and ingest",
            "`pollerd backfill` as a subprocess writing a real SQLite file. *Ingest* is the "
            "Shopify bulk file's local work (download, parse, normalise, diff, commit); *of API "
            "ceiling* is the same GET requests replayed back to back by a plain client over "
            "pollerd's wall time. Peak RSS is the process's own VmHWM.",
            render_backfill,
        ),
        (
            "Fault matrix",
            "The rows of research §B.6 (map: `tests/fault/README.md`): real `pollerd` processes "
            "killed, bounced, starved and lied to; the simulators' history as truth, the sink's "
            "receipts as what was delivered, one pure checker between them (lost, duplicated, "
            "unexpected, out of order). Each row also runs against a deliberately broken variant "
            "that must fail.",
            render_faults,
        ),
        (
            "Peers side by side",
            "The same simulated store and scripted history for each tool (`bench/peers/`).",
            render_peers,
        ),
        ("Other figures", "", render_other),
    ]
    head = [
        "# Benchmarks",
        "",
        "Written by `python bench/run_all.py` (do not edit by hand: it is regenerated). Every "
        "figure below comes from the command printed under its table, on loopback only. Raw "
        "figures: `bench/results.json`.",
        "",
        f"Measured {meta['when']} at commit `{meta['commit']}` on {meta['machine']}; "
        f"the whole run took {meta['seconds']} s.",
        "",
    ]
    body = []
    for title, prose, fn in sections:
        body += [f"## {title}", ""]
        if prose:
            body += [prose, ""]
        body += [fn(results).rstrip(), ""]
    failed = [n for n, e in results.items() if n != "_meta" and not e.get("ok")]
    if failed:
        body += ["## Steps that failed or were skipped", ""]
        for n in failed:
            entry = results[n]
            why = entry.get("skipped") or entry.get("error") or f"exit {entry.get('exit')}"
            body.append(f"- `{n}`: {why}")
        body.append("")
    return "\n".join(head + body)


def machine() -> str:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} cores ({cpu or platform.machine()}), Python {platform.python_version()}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated step names")
    parser.add_argument("--render", action="store_true", help="only rewrite the README")
    parser.add_argument("--list", action="store_true", help="the steps and their commands")
    args = parser.parse_args()
    if args.list:
        for step in STEPS:
            print(f"{step.name:24} {_shown(step)}")
        return 0
    results: dict[str, Any] = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    wanted = {s.strip() for s in args.only.split(",") if s.strip()}
    unknown = wanted - {s.name for s in STEPS}
    if unknown:
        parser.error(f"--only: unknown step(s) {', '.join(sorted(unknown))}; see --list")
    started = time.monotonic()
    if not args.render:
        steps = [s for s in STEPS if not wanted or s.name in wanted]
        with ThreadPoolExecutor(max_workers=1) as beside:
            pending = {s.name: beside.submit(run_step, s) for s in steps if s.beside}
            for step in steps:
                if not step.beside:
                    print(f"{step.name} …", file=sys.stderr, flush=True)
                    results[step.name] = run_step(step)
                    print(f"  {results[step.name].get('seconds')} s", file=sys.stderr)
            for name, future in pending.items():
                results[name] = future.result()
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        results["_meta"] = {
            "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "commit": commit or "?",
            "machine": machine(),
            "seconds": round(time.monotonic() - started),
        }
        RESULTS.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    meta = results.get("_meta") or {
        "when": "?",
        "commit": "?",
        "machine": machine(),
        "seconds": "?",
    }
    README.write_text(render({k: v for k, v in results.items()}, meta))
    failed = [n for n, e in results.items() if n != "_meta" and not e.get("ok")]
    for name in failed:
        print(f"failed: {name}: {results[name].get('stderr', '')[-400:]}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
