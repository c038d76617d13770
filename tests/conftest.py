"""Shared real parts: the simulated store, the webhook sink, config files, pollerd subprocesses;
and the suite-wide log scan.

Readiness is awaited on the daemon's own `READY=1` datagram (a unixgram NOTIFY_SOCKET), and
deliveries on the sink's condition variable: no sleeps as synchronisation.

Log scan (issue 5: "a test collects every log line the whole test suite produced and asserts
that no configured secret and no fixture customer email/phone appears"): every test process
(each xdist worker, or the single process without xdist) installs pollerd's redaction patcher,
as `pollerd.log.setup` does in production, and a loguru sink at DEBUG writing to
`<session dir>/<worker>.log`, each test's lines under a `### <test id>` marker. The output of
`pollerd` subprocesses run through `pollerd_sim.harness.pollerd` and of `daemon_factory`
daemons is copied there too. At session end the controller scans every file for the sims'
secrets and customer e-mails/phones (collected from `pollerd_sim` and the JSON fixtures, see
`fixture_needles`) and fails the run naming file, line and test.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import json
import os
import pkgutil
import re
import secrets
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import pytest
from loguru import logger

import pollerd_sim as sim_package
from pollerd.log import install_redaction
from pollerd_sim import WebhookSink, WooSim, harness
from pollerd_sim.harness import (
    HOOK_SECRET,
    KEY,
    SECRET,
    Daemon,
    pollerd_env,
    write_config,
)
from tests.support import ROOT

pytest_plugins = ["pytester"]

__all__ = ["HOOK_SECRET", "KEY", "ROOT", "SECRET", "pollerd", "pollerd_env", "write_config"]

LOG_DIR_KEY = "pollerd_log_dir"
MARKER = "### "


@pytest.fixture
def sim() -> Iterator[WooSim]:
    with WooSim(consumer_key=KEY, consumer_secret=SECRET) as server:
        yield server


@pytest.fixture
def sink() -> Iterator[WebhookSink]:
    with WebhookSink() as server:
        yield server


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The simulated channels' `TEST_*` variables, for pollerd run in this process."""
    for name, value in pollerd_env().items():
        if name.startswith("TEST_"):
            monkeypatch.setenv(name, value)


@pytest.fixture
def errors() -> Iterator[list[str]]:
    """The messages of the ERROR lines pollerd logs while the test runs."""
    lines: list[str] = []
    handler = logger.add(lambda m: lines.append(str(m)), level="ERROR", format="{message}")
    yield lines
    logger.remove(handler)


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Iterator[Any]:
    made: list[Daemon] = []

    def make(config: Path, **options: Any) -> Daemon:
        d = Daemon(config, tmp_path, **options)
        made.append(d)
        return d

    yield make
    for d in made:
        d.close()
        if _CAPTURE is not None:
            _CAPTURE.add_output(f"daemon {d.config}", d.output())


# PostgreSQL ---------------------------------------------------------------------------------

POSTGRES = os.environ.get("POLLERD_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
"""Where the PostgreSQL tests connect to create their database (libpq URL; trust auth). CI
(`.ci/run`) starts the distribution's server there when none answers."""


def _no_postgres(why: str) -> None:
    """Skip on a developer machine without a server; in CI the tests must run, so fail."""
    reason = f"PostgreSQL tests: {why}; `.ci/run` starts one, or set POLLERD_TEST_POSTGRES"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[dict[str, Any]]:
    """A fresh database `pollerd_test_<random>` for this test run (one per xdist worker),
    dropped at the end; yields its libpq connection parameters."""
    try:
        import psycopg
        from psycopg import sql
        from psycopg.conninfo import conninfo_to_dict
    except ImportError:
        _no_postgres("psycopg is not installed (pip install -e '.[test]')")
        raise
    params = conninfo_to_dict(POSTGRES)
    try:
        admin = psycopg.connect(POSTGRES, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        _no_postgres(f"no server answers at {params.get('host')}:{params.get('port')} ({first})")
        raise
    name = f"pollerd_test_{secrets.token_hex(4)}"
    with admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield {**params, "dbname": name}
        finally:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture
def postgres(postgres_database: dict[str, Any]) -> str:
    """A `postgresql+psycopg://` URL (pollerd's `database`) of an empty schema of this test's
    own in the run's database: each test starts from no tables, as with a new SQLite file."""
    import psycopg
    from psycopg import sql
    from sqlalchemy.engine import URL

    schema = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(**postgres_database, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    port = postgres_database.get("port")
    url = URL.create(
        "postgresql+psycopg",
        username=postgres_database.get("user"),
        password=postgres_database.get("password"),
        host=postgres_database.get("host"),
        port=int(port) if port else None,
        database=postgres_database["dbname"],
        query={"options": f"-csearch_path={schema}"},
    )
    return url.render_as_string(hide_password=False)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The store's URL on each backend pollerd accepts: a new SQLite file, a new PostgreSQL
    schema (`postgres`)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'p.db'}"
    return str(request.getfixturevalue("postgres"))


# the suite-wide log capture ----------------------------------------------------------------


class LogCapture:
    """This process's capture file: loguru records (after redaction, as a production sink
    sees them) and copied subprocess output, each test's lines under a marker."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: TextIO = path.open("a", encoding="utf-8", errors="backslashreplace")
        self._lock = threading.Lock()
        self.handler: int | None = None

    def write(self, text: str) -> None:
        with self._lock:
            self._file.write(text if text.endswith("\n") else text + "\n")
            self._file.flush()

    def sink(self, message: Any) -> None:
        record = message.record
        extra = record["extra"]
        text = f"{record['level'].name} {record['name']}:{record['line']} | {record['message']}"
        text += "".join(f" | {k}={v}" for k, v in extra.items() if k != "traceback")
        if "traceback" in extra:
            text += "\n" + str(extra["traceback"])
        if record["exception"] is not None:  # only when the redaction patcher was bypassed
            text += "\n" + "".join(_format_exception(record["exception"]))
        self.write(text)

    def attach(self) -> None:
        """(Re)install the patcher and this sink: a test may have called `logger.remove()`."""
        install_redaction()
        if self.handler is None or self.handler not in logger._core.handlers:  # type: ignore[attr-defined]
            self.handler = logger.add(self.sink, level="DEBUG", format="{message}", catch=True)

    def add_output(self, source: str, text: str) -> None:
        if text:
            self.write(f"{MARKER}{_CURRENT_TEST[0]} :: {source}\n{text}")

    def close(self) -> None:
        with self._lock:
            self._file.close()


def _format_exception(exc: Any) -> list[str]:
    import traceback

    return traceback.format_exception(exc.type, exc.value, exc.traceback)


_CAPTURE: LogCapture | None = None
_CURRENT_TEST = ["(session start)"]
_ORIGINAL_POLLERD = harness.pollerd


def pollerd(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`harness.pollerd`, with the child's stdout and stderr copied into the log capture."""
    result = _ORIGINAL_POLLERD(*args, env=env, timeout=timeout)
    if _CAPTURE is not None:
        _CAPTURE.add_output("pollerd " + " ".join(args), result.stdout + result.stderr)
    return result


harness.pollerd = pollerd  # test modules import it after this conftest has loaded


_EMAIL = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$")
_PHONE = re.compile(r"^\+?[\d (][\d ()-]{5,}\d$")
_DATE = re.compile(r"^\d{4}-\d{2}(?:-\d{2})?$")


def _is_phone(value: str) -> bool:
    return bool(_PHONE.match(value)) and not _DATE.match(value) and _digits(value) >= 7


def _digits(value: str) -> int:
    return sum(c.isdigit() for c in value)


_SECRET_NAME = re.compile(r"(?i)(token|secret|password|passwd|(^|_)key$|hook$)")


def fixture_needles() -> dict[str, str]:
    """Text that must never reach a log: value → where it was found. Collected, not listed:
    upper-case constants of every `pollerd_sim` module named like a secret (harness KEY,
    SECRET, SHOPIFY_TOKEN, HOOK_SECRET; chat SIM_*), default arguments named like a secret,
    e-mail or phone (`WooSim(consumer_secret=...)`, `create_order(email=..., phone=...)`), any
    e-mail/phone inside module constants (stream PEOPLE), and the `email`/`phone` values of
    the JSON fixtures the sims and tests serve."""
    found: dict[str, str] = {}

    def walk(value: Any, where: str, key: str = "", by_key: bool = False) -> None:
        """Strings that look like an e-mail or phone (in JSON: under a key naming one, since
        JSON is full of long numbers that are ids and timestamps)."""
        if isinstance(value, str):
            named = "email" in key or "phone" in key
            personal = named if by_key else _EMAIL.match(value) or _is_phone(value) or named
            if personal and len(value) >= 6:
                found.setdefault(value, where)
        elif isinstance(value, list | tuple | set | frozenset):
            for item in value:
                walk(item, where, key, by_key)
        elif isinstance(value, dict):
            for name, item in value.items():
                walk(item, where, str(name).lower(), by_key)

    # every module, pollerd_sim.testing's included (the contract rigs hold test credentials)
    for info in pkgutil.walk_packages(sim_package.__path__, "pollerd_sim."):
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            where = f"{module.__name__}.{name}"
            if name.isupper():
                if isinstance(value, str) and _SECRET_NAME.search(name) and len(value) >= 6:
                    found.setdefault(value, where)
                walk(value, where)
            if getattr(value, "__module__", None) != module.__name__:
                continue
            functions = [value] if inspect.isfunction(value) else []
            if inspect.isclass(value):
                functions = [f for f in vars(value).values() if inspect.isfunction(f)]
            for function in functions:
                for param in inspect.signature(function).parameters.values():
                    default = param.default
                    if not isinstance(default, str) or len(default) < 6:
                        continue
                    at = f"{module.__name__}.{function.__qualname__}({param.name}=)"
                    if _SECRET_NAME.search(param.name):
                        found.setdefault(default, at)
                    walk(default, at, param.name)
    folders = [Path(sim_package.__file__).parent / "data", ROOT / "tests" / "fixtures"]
    for path in sorted(p for folder in folders for p in folder.rglob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            walk(data, str(path.relative_to(ROOT)), by_key=True)
        except (ValueError, UnicodeDecodeError):
            continue
    return found


def _needle_pattern(needles: dict[str, str]) -> tuple[re.Pattern[str], dict[str, str]]:
    """One regex for every needle; a phone also matches as bare digits (`+1 555 0100` logged
    as `15550100`), bounded by non-digits. Returns the pattern and match text → source."""
    by_text: dict[str, str] = {}
    parts: list[str] = []
    for value, where in needles.items():
        by_text[value] = where
        parts.append(re.escape(value))
        digits = re.sub(r"\D", "", value)
        if _is_phone(value):
            by_text[digits] = where
            parts.append(rf"(?<!\d){digits}(?!\d)")
    parts.sort(key=len, reverse=True)
    return re.compile("|".join(parts)), by_text


def scan(folder: Path, needles: dict[str, str]) -> tuple[int, list[str]]:
    """(lines scanned, one message per leak: file, line, test and the needle's source; never
    the needle itself)."""
    pattern, by_text = _needle_pattern(needles)
    lines, leaks = 0, []
    for path in sorted(folder.glob("*.log")):
        test = "(before the first test)"
        with path.open(encoding="utf-8", errors="replace") as handle:
            for number, line in enumerate(handle, 1):
                lines += 1
                if line.startswith(MARKER):
                    test = line[len(MARKER) :].strip()
                    continue
                for match in pattern.finditer(line):
                    source = by_text.get(match.group(0), "?")
                    leaks.append(f"{path}:{number}: {source} appears (test {test})")
    return lines, leaks


@pytest.hookimpl(optionalhook=True)  # an xdist hook: a run with `-p no:xdist` has no such hook
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto` (pyproject's addopts) runs two workers per core: the suite waits more than it
    computes (real subprocesses, simulators, sinks, kill and restart), so on the 2-core machine
    one worker per core kept the CPUs under half busy (10 min of CPU in 11.5 min of wall time).
    Two per core: the whole run in 410 s instead of 690 s."""
    return 2 * (os.cpu_count() or 1)


SLOW_FIRST = ("fault", "daemon", "integration")
"""Directories whose tests start processes and wait on them, scheduled first."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The long tests first (a stable sort: each module stays whole and in order). xdist hands
    tests out in this order, so the fault matrix's minute-long rows start at once and the
    thousands of short unit tests fill the workers around them, instead of one row starting
    last and running alone. With `--dist worksteal` (pyproject's addopts: an idle worker takes
    half of a busy one's queue), the whole run with the fault matrix went from 13.6 to 9.6
    minutes on the 2-core machine."""

    def rank(item: pytest.Item) -> int:
        parts = Path(str(item.path)).parts
        return next((i for i, name in enumerate(SLOW_FIRST) if name in parts), len(SLOW_FIRST))

    items.sort(key=rank)


def pytest_configure(config: pytest.Config) -> None:
    global _CAPTURE
    worker = getattr(config, "workerinput", None)
    if worker is not None:
        folder, name = Path(worker[LOG_DIR_KEY]), worker["workerid"]
    else:
        folder, name = Path(tempfile.mkdtemp(prefix="pollerd-logscan-")), "main"
        config.stash[_DIR] = folder
    _CAPTURE = LogCapture(folder / f"{name}.log")
    _CAPTURE.attach()


_DIR = pytest.StashKey[Path]()
_RESULT = pytest.StashKey[tuple[int, list[str]]]()


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist: tell each worker where the session's capture folder is."""
    node.workerinput[LOG_DIR_KEY] = str(node.config.stash[_DIR])


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    _CURRENT_TEST[0] = item.nodeid
    if _CAPTURE is not None:
        _CAPTURE.write(f"{MARKER}{item.nodeid}")
        _CAPTURE.attach()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """On the controller only (workers have finished and flushed by now): scan, and fail the
    run on any leak."""
    config = session.config
    if getattr(config, "workerinput", None) is not None or _DIR not in config.stash:
        return
    if _CAPTURE is not None:
        if _CAPTURE.handler is not None:
            with contextlib.suppress(ValueError):
                logger.remove(_CAPTURE.handler)
        _CAPTURE.close()
    folder = config.stash[_DIR]
    lines, leaks = scan(folder, fixture_needles())
    config.stash[_RESULT] = (lines, leaks)
    if leaks:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    else:
        shutil.rmtree(folder, ignore_errors=True)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if _RESULT not in config.stash:
        return
    lines, leaks = config.stash[_RESULT]
    if not leaks:
        terminalreporter.write_line(
            f"log scan: {lines} captured log lines, no fixture secret, e-mail or phone"
        )
        return
    terminalreporter.section("log scan: secrets or customer data in the logs", sep="=", red=True)
    for leak in leaks[:50]:
        terminalreporter.write_line(leak, red=True)
    if len(leaks) > 50:
        terminalreporter.write_line(f"... and {len(leaks) - 50} more", red=True)
    terminalreporter.write_line(f"captured logs kept in {config.stash[_DIR]}")
