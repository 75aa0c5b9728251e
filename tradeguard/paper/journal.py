"""The paper state file's journal entries: what one change did to the account, and its replay.

An entry is one JSON line holding the new values of what the change touched: the cash, the whole
state document of each order that changed, and the positions and prices that changed (``null``
for one that went away). Entries hold values, not commands: replaying one sets what it names and
needs neither prices nor the clock, and replaying it twice gives the same account.

Which orders changed is found without looking at every order the account ever had: an order can
only change while it is open, or as the parent of a leg that changes (a replaced leg renames
itself in its parent's `leg_ids`, and the parent of a bracket is often filled already). So the
candidates are the orders open at the last write, those open now, those added since, and their
parents; each is compared with the text last written for it (`PaperState.rendered`).
"""

from __future__ import annotations

from decimal import Decimal
from itertools import islice
from typing import Any

from tradeguard.paper.orders import PaperOrder, dumps, fmt
from tradeguard.paper.state import PaperState

__all__ = ["Tracker", "apply_entry"]

_Diff = dict[str, Any]


class Tracker:
    """What the account held at the last write, to write the next change as a journal entry."""

    __slots__ = ("_avg", "_cash", "_count", "_last", "_open", "_qty", "_set")

    def __init__(self, state: PaperState) -> None:
        self.reset(state)

    def reset(self, state: PaperState) -> None:
        """Take `state` as written (after a snapshot, or after an entry was written)."""
        self._cash = state.cash
        self._qty = state.qty.copy()
        self._avg = state.avg_price.copy()
        self._last = state.last_price.copy()
        self._set = state.set_prices.copy()
        self._open = list(state.open_ids) if state.open_ids else []
        self._count = len(state.orders)

    def entry(self, state: PaperState) -> tuple[str, list[tuple[PaperOrder, tuple[object, ...], str]]] | None:
        """Return the journal line of what changed since the last write, or None if nothing did.

        Returns:
            The line (ending in a newline) and the orders it writes with their cache keys and
            texts, for `commit` once the line is written.
        """
        orders = self._changed_orders(state)
        positions: _Diff = {}
        # Plain dict comparisons first (in C): most changes move one position or none.
        if state.qty != self._qty or state.avg_price != self._avg:
            for symbol, qty in state.qty.items():
                avg = state.avg_price[symbol]
                if self._qty.get(symbol) != qty or self._avg.get(symbol) != avg:
                    positions[symbol] = {"qty": fmt(qty), "avg_entry_price": fmt(avg)}
            for symbol in self._qty:
                if symbol not in state.qty:
                    positions[symbol] = None
        last = _diff(state.last_price, self._last, fmt) if state.last_price != self._last else {}
        pinned = _diff(state.set_prices, self._set, fmt) if state.set_prices != self._set else {}
        if not orders and not positions and not last and not pinned and state.cash == self._cash:
            return None
        parts = [f'{{"cash":"{fmt(state.cash)}"', f'"orders":[{",".join([t for _, _, t in orders])}]']
        for name, diff in (("positions", positions), ("last_prices", last), ("set_prices", pinned)):
            if diff:
                parts.append(f'"{name}":{dumps(diff)}')
        return ",".join(parts) + "}\n", orders

    def commit(self, state: PaperState, orders: list[tuple[PaperOrder, tuple[object, ...], str]]) -> None:
        """Take the entry as written: remember the orders' texts and the account's values."""
        for order, key, text in orders:
            state.rendered[order.id] = (key, text)
        self.reset(state)

    def _changed_orders(self, state: PaperState) -> list[tuple[PaperOrder, tuple[object, ...], str]]:
        added = len(state.orders) - self._count
        if added == 1 and not self._open and not state.open_ids:
            # The commonest change (a market order that filled at once): nothing was open and
            # nothing is, so the one order added is the one that changed, unless it is a leg.
            newest = state.orders[next(reversed(state.orders))]
            if newest.parent_id is None:
                return [(newest, newest.cache_key(), newest.state_text())]
        # The newest orders, oldest first: a replay adds them in the order the account took them.
        new_ids = list(islice(reversed(state.orders), added))[::-1] if added > 0 else []
        fresh = set(new_ids)
        ids = dict.fromkeys(i for i in self._open if i not in fresh)
        ids.update((i, None) for i in state.open_ids if i not in fresh)
        for order_id in [*ids, *new_ids]:
            order = state.orders.get(order_id)
            if order is not None and order.parent_id is not None and order.parent_id not in fresh:
                ids.setdefault(order.parent_id)
        ids.update((i, None) for i in new_ids)
        changed = []
        for order_id in ids:
            order = state.orders.get(order_id)
            if order is None:
                continue
            key = order.cache_key()
            cached = state.rendered.get(order_id)
            if cached is None or cached[0] != key:
                changed.append((order, key, order.state_text()))
        return changed


def _diff(now: dict[str, Any], before: dict[str, Any], render: Any) -> _Diff:
    diff: _Diff = {s: render(v) for s, v in now.items() if before.get(s) != v}
    diff.update((s, None) for s in before if s not in now)
    return diff


def apply_entry(state: PaperState, doc: dict[str, Any]) -> None:
    """Replay one journal entry (a parsed line) onto `state`.

    Raises:
        KeyError, TypeError, ValueError, decimal.InvalidOperation: The entry is not one.
    """
    if not isinstance(doc, dict):
        raise TypeError(f"a journal entry is a JSON object, not {type(doc).__name__}")
    state.cash = Decimal(str(doc["cash"]))
    for order_doc in doc["orders"]:
        order = PaperOrder.from_state(order_doc)
        if order.id in state.orders:
            state.orders[order.id] = order
            state.track(order)
        else:
            state.add(order)
    for symbol, pos in doc.get("positions", {}).items():
        if pos is None:
            state.qty.pop(symbol, None)
            state.avg_price.pop(symbol, None)
        else:
            state.qty[symbol] = Decimal(str(pos["qty"]))
            state.avg_price[symbol] = Decimal(str(pos["avg_entry_price"]))
    for name in ("last_prices", "set_prices"):
        prices = state.last_price if name == "last_prices" else state.set_prices
        for symbol, price in doc.get(name, {}).items():
            if price is None:
                prices.pop(symbol, None)
            else:
                prices[symbol] = Decimal(str(price))
