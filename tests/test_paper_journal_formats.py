"""The paper state file's formats: files written by earlier versions replay to the same account.

`tests/data/paper_journal_alpaca_docs.state` was written by the version whose order documents
were Alpaca's whole JSON plus the state's own fields (before `PaperOrder.to_state` left out null
fields), by `tests/data/make_paper_journal_fixture.py`; beside it, the account it held.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from tradeguard.paper import PaperBroker
from tradeguard.paper.orders import PaperOrder, fmt, iso
from tradeguard.paper.state import PaperState
from tradeguard.paper.statefile import StateFile
from tradeguard.testing import make_request

DATA = Path(__file__).parent / "data"


def expected_account(name: str) -> tuple[dict[str, PaperOrder], dict[str, object]]:
    doc = json.loads((DATA / f"{name}.expected.json").read_text())
    orders = {o["id"]: PaperOrder.from_state(o) for o in doc.pop("orders")}
    account = {k: v if isinstance(v, str) else {s: Decimal(p) for s, p in v.items()} for k, v in doc.items()}
    account["cash"] = Decimal(doc["cash"])
    return orders, account


def account_of(state: PaperState) -> dict[str, object]:
    return {
        "cash": state.cash,
        "qty": state.qty,
        "avg_price": state.avg_price,
        "last_price": state.last_price,
        "set_prices": state.set_prices,
        "account_key": state.account_key,
    }


def load(path: Path) -> PaperState:
    return StateFile(path).load(PaperState(cash=Decimal(0)))


def test_a_journal_of_alpaca_documents_replays_to_the_account_it_held(tmp_path: Path) -> None:
    path = tmp_path / "paper.json"
    shutil.copyfile(DATA / "paper_journal_alpaca_docs.state", path)
    assert len(path.read_text().split("\n")) > 10  # a snapshot and its journal lines
    orders, account = expected_account("paper_journal_alpaca_docs")
    state = load(path)
    assert state.orders == orders
    assert list(state.orders) == list(orders)  # in the order the account took them
    assert account_of(state) == account
    assert list(state.open_ids) == [i for i, o in orders.items() if not o.status.is_terminal]
    # Loading folded the journal into a snapshot of this version's documents: it reads the same.
    assert len(path.read_text().split("\n")) == 2
    again = load(path)
    assert again.orders == orders and account_of(again) == account


def test_an_account_of_alpaca_documents_takes_new_orders_after_them(tmp_path: Path) -> None:
    path = tmp_path / "paper.json"
    shutil.copyfile(DATA / "paper_journal_alpaca_docs.state", path)
    orders, _ = expected_account("paper_journal_alpaca_docs")
    broker = PaperBroker(state_path=path, cash=0)
    broker.set_price("QQQ", 400)
    broker.submit_order(make_request("QQQ", "buy", 1, client_order_id="after"))
    ids = [o.id for o in PaperBroker(state_path=path).orders()]
    assert ids[:-1] == list(orders) and len(ids) == len(orders) + 1


def test_a_state_document_rebuilds_the_order_its_alpaca_document_did() -> None:
    orders, _ = expected_account("paper_journal_alpaca_docs")
    for order in orders.values():
        assert PaperOrder.from_state(json.loads(order.state_text())) == order


def test_a_client_order_id_utf8_cannot_hold_is_written_and_read_back(tmp_path: Path) -> None:
    # A lone surrogate parses from JSON ("\ud800"); the fast encoder refuses it, json escapes it.
    path = tmp_path / "paper.json"
    broker = PaperBroker(state_path=path)
    broker.submit_order(make_request("SPY", client_order_id="first"))
    broker.submit_order(make_request("SPY", client_order_id="lone-\ud800"))  # a journal line
    again = PaperBroker(state_path=path)
    assert [o.client_order_id for o in again.orders()] == ["first", "lone-\ud800"]


ZONES = [UTC, timezone(timedelta(hours=-4)), timezone(timedelta(hours=5, minutes=30))]


@given(
    when=st.datetimes(
        min_value=datetime(2, 1, 1),  # noqa: DTZ001 - hypothesis bounds are naive; timezones= makes them aware
        max_value=datetime(9998, 12, 31),  # noqa: DTZ001
        timezones=st.sampled_from(ZONES),
    )
)
def test_a_time_renders_as_isoformat_in_utc_with_microseconds_and_z(when: datetime) -> None:
    assert iso(when) == when.astimezone(UTC).isoformat(timespec="microseconds")[:-6] + "Z"


@given(value=st.decimals(allow_nan=False, allow_infinity=False) | st.decimals(places=4, allow_nan=False))
def test_a_decimal_renders_as_its_normalized_plain_digits(value: Decimal) -> None:
    text = format(value.normalize(), "f")
    assert fmt(value) == ("0" if text in {"-0", ""} else text)
