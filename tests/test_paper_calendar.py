"""The paper server answers a bot's calendar and account-configuration reads as Alpaca does.

A plain alpaca-py bot that checks `get_calendar()` or `get_account_configurations()` at start got
404 "endpoint not found" from the paper server (audit36) and crashed before trading: the paper
mode must run an ordinary bot unmodified. The calendar is the paper venue's own: every weekday,
09:30-16:00 US/Eastern, as `/v2/clock` keeps it.
"""

from __future__ import annotations

from datetime import date, time
from zoneinfo import ZoneInfo

import pytest
from alpaca.common.exceptions import APIError
from alpaca.trading.requests import GetCalendarRequest

from tradeguard.testing import alpaca_client, paper_server


def test_a_bots_calendar_read_lists_the_weekdays_the_paper_clock_opens() -> None:
    with paper_server() as server, alpaca_client(server.url) as client:
        week = client.get_calendar(GetCalendarRequest(start=date(2026, 5, 21), end=date(2026, 5, 26)))
        everything = client.get_calendar()
        clock = client.get_clock()
    # alpaca-py reads a day's open and close as naive times of the market's zone.
    assert [(d.date, d.open.time(), d.close.time()) for d in week] == [
        (date(2026, 5, day), time(9, 30), time(16, 0)) for day in (21, 22, 25, 26)
    ]
    assert all(d.open.date() == d.date for d in week)
    assert (everything[0].date, everything[-1].date) == (date(1970, 1, 1), date(2029, 12, 31))
    assert all(d.date.weekday() < 5 for d in everything)
    # The clock's next close is on a day the calendar lists, at its close.
    closes = {d.date: d.close for d in everything}
    local_close = clock.next_close.astimezone(ZoneInfo("America/New_York"))
    assert closes[local_close.date()].time() == local_close.time().replace(tzinfo=None)


def test_a_bad_calendar_date_is_alpacas_422_naming_it() -> None:
    with paper_server() as server, alpaca_client(server.url) as client, pytest.raises(APIError) as info:
        client.get("/calendar", {"start": "21/05/2026"})
    assert info.value.status_code == 422
    assert "invalid start" in info.value.message


@pytest.mark.parametrize("allow_short", [False, True])
def test_account_configurations_say_whether_the_paper_account_may_short(allow_short: bool) -> None:
    with paper_server(allow_short=allow_short) as server, alpaca_client(server.url) as client:
        config = client.get_account_configurations()
        account = client.get_account()
    assert config.no_shorting is (not allow_short)
    assert account.shorting_enabled is allow_short
    assert (config.suspend_trade, config.fractional_trading, config.max_margin_multiplier) == (
        False,
        True,
        "1",
    )
