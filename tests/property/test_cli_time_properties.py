"""Property: any `--since/--until/--start-from` text gives a correct aware time or the usage
error naming the option (exit 2), never a traceback (issue 12, item 12). Checked on the CLI's
own parser (`cli.root.parse_time`) followed by what every command does next with the result:
`localtime.describe` and the cursor arithmetic of a backfill or a start-point move.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import typer
from hypothesis import example, given
from hypothesis import strategies as st

from pollerd.cli.root import parse_time
from pollerd.localtime import describe

pytestmark = pytest.mark.fault  # `-m fault` with POLLERD_FAULT_SCALE=nightly: 20x

ZONES = [
    "UTC",
    "Asia/Shanghai",
    "America/New_York",
    "Pacific/Kiritimati",  # +14
    "Etc/GMT+12",  # -12
    "Europe/Dublin",  # negative DST in tzdata
    "Australia/Lord_Howe",  # 30-minute DST
]
SPAN = timedelta(days=3660)
_PIECES = st.sampled_from(
    [
        "2026-11-01",
        "2026-11-01T08:30",
        "2026-11-01T00:00:00Z",
        "2026-11-01 00:00:00+08:00",
        "0001-01-01",
        "0001-01-01T00:00:00+14:00",
        "9999-12-31",
        "9999-12-31T23:59:59-12:00",
        "2026-03-08T02:30",  # a New York DST gap
        "2026-02-30",
        "now",
        "z",
        "Z",
        "",
        " ",
        "T",
        "+08:00",
        "２０２６-11-01",
        "2026-11-01T08:30:00.123456789",
        "2026-W44-1",
        "\udcff",  # an undecodable argv byte, as Python hands it over
        "\x00",
    ]
)
TEXT = st.one_of(
    _PIECES,
    st.lists(_PIECES, min_size=1, max_size=3).map("".join),
    st.text(max_size=30),
    st.datetimes().map(datetime.isoformat),
    st.datetimes(timezones=st.timezones()).map(datetime.isoformat),
)


@given(TEXT, st.sampled_from(ZONES))
@example("0001-01-01", "Asia/Shanghai")  # OverflowError in describe (the UTC instant)
@example("9999-12-31T23:59:59", "America/New_York")  # OverflowError in describe
@example("0001-01-02", "UTC")  # OverflowError in the backfill's window arithmetic
@example("2026-11-01+08:00", "UTC")  # read as 08:00 local time, not midnight at +08:00
@example("2026-11-01-05:00", "Asia/Shanghai")  # read as 05:00 in Shanghai
@example("2026-11-01x12:30", "UTC")  # any character passed as the date/time separator
def test_cli_time(text: str, zone: str) -> None:
    try:
        when = parse_time(text, "--since", zone)
    except typer.Exit as exc:
        assert exc.exit_code == 2
        return
    assert when.utcoffset() is not None
    describe(when, zone)
    assert when - SPAN < when + SPAN
    # The oracle: RFC 3339 read by hand (a date alone is midnight; no offset: the local zone).
    form = re.fullmatch(
        r"(\d{4}-\d{2}-\d{2})(?:[Tt ]([0-9:.]+))?([Zz]|[+-][0-9:]+)?", text.strip(), re.ASCII
    )
    assert form is not None, text
    day, clock, offset = form.groups()
    wall = datetime.fromisoformat(f"{day}T{clock or '00:00'}")
    if offset is None:
        assert when.replace(tzinfo=None) == wall and when.tzinfo == ZoneInfo(zone)
    else:
        zone_of = UTC if offset in "zZ" else datetime.fromisoformat(f"{day}T00:00{offset}").tzinfo
        assert when == wall.replace(tzinfo=zone_of)


def test_cli_time_usage_error_names_the_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit):
        parse_time("0001-01-01", "--since", "Asia/Shanghai")
    assert "--since: '0001-01-01'" in capsys.readouterr().err
