"""The paper venue's asset master: which symbols trade, and how (Alpaca's `/v2/assets`).

A list of common US symbols ships with the package (`assets.csv`, flags as Alpaca showed them
when the list was made: a fair copy, not an authority). A file of the same columns adds symbols
or overrides shipped ones. Only ``symbol`` is required; a missing column takes the permissive
default (active, tradable, marginable, shortable, easy to borrow, fractionable, NASDAQ, 30%)::

    symbol,name,exchange,shortable,fractionable,attributes
    NEWCO,New Company Inc.,NYSE,false,false,ipo

``attributes`` is a ``;``-separated list. Asset ids are derived from the symbol unless an ``id``
column gives one.
"""

from __future__ import annotations

import csv
import functools
import io
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from importlib import resources
from typing import Any

from tradeguard.errors import ConfigError
from tradeguard.paper.orders import asset_id
from tradeguard.paper.refusals import unprocessable

__all__ = ["Asset", "AssetBook", "load_assets", "priced_asset", "select_assets"]

# The exchanges alpaca-py's AssetExchange enum knows: anything else would fail its parsing.
_EXCHANGES = frozenset(
    {"AMEX", "ARCA", "ASCX", "BATS", "NYSE", "NASDAQ", "NYSEARCA", "FTXU", "CBSE", "GNSS", "ERSX", "OTC"}
)
_FLAGS = ("tradable", "marginable", "shortable", "easy_to_borrow", "fractionable")
_COLUMNS = frozenset(
    {"symbol", "name", "exchange", "class", "status", "maintenance_margin_requirement", "attributes", "id"}
    | set(_FLAGS)
)


@dataclass(frozen=True, slots=True)
class Asset:
    """One tradable (or not) symbol, with the flags Alpaca's order checks read."""

    symbol: str
    name: str = ""
    exchange: str = "NASDAQ"
    asset_class: str = "us_equity"
    status: str = "active"
    tradable: bool = True
    marginable: bool = True
    shortable: bool = True
    easy_to_borrow: bool = True
    fractionable: bool = True
    maintenance_margin_requirement: Decimal = Decimal(30)
    attributes: tuple[str, ...] = ()
    id: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "symbol", self.symbol.strip().upper())
        if not self.id:
            object.__setattr__(self, "id", asset_id(self.symbol))

    @property
    def active(self) -> bool:
        """True when the asset is listed as active."""
        return self.status == "active"

    def to_alpaca(self) -> dict[str, Any]:
        """Return the asset as Alpaca's `GET /v2/assets/{symbol}` JSON."""
        margin = self.maintenance_margin_requirement
        # Alpaca sends this one as a JSON number (alpaca-py reads a float), the newer two as strings.
        number: int | float = int(margin) if margin == margin.to_integral_value() else float(margin)
        text = format(margin.normalize(), "f")
        return {
            "id": self.id,
            "class": self.asset_class,
            "exchange": self.exchange,
            "symbol": self.symbol,
            "name": self.name,
            "status": self.status,
            "tradable": self.tradable,
            "marginable": self.marginable,
            "maintenance_margin_requirement": number,
            "margin_requirement_long": text,
            "margin_requirement_short": text,
            "shortable": self.shortable,
            "easy_to_borrow": self.easy_to_borrow,
            "fractionable": self.fractionable,
            "attributes": list(self.attributes),
        }


class AssetBook:
    """Assets by symbol and by id; later assets of the same symbol replace earlier ones."""

    def __init__(self, assets: Iterable[Asset] = ()) -> None:
        self._by_symbol: dict[str, Asset] = {}
        for asset in assets:
            self._by_symbol[asset.symbol] = asset
        self._by_id = {asset.id: asset for asset in self._by_symbol.values()}

    @classmethod
    def shipped(cls) -> AssetBook:
        """Return the book of the assets that ship with tradeguard."""
        return cls(_shipped())

    def merged(self, extra: Iterable[Asset]) -> AssetBook:
        """Return a book with `extra` added (and replacing shipped assets of the same symbol)."""
        return AssetBook([*self._by_symbol.values(), *extra])

    def get(self, symbol_or_id: str) -> Asset | None:
        """Return the asset with this symbol (any case) or id, or None."""
        return self._by_symbol.get(symbol_or_id.strip().upper()) or self._by_id.get(symbol_or_id.strip())

    def __iter__(self) -> Iterator[Asset]:
        return iter(sorted(self._by_symbol.values(), key=lambda a: a.symbol))

    def __contains__(self, symbol: object) -> bool:
        return isinstance(symbol, str) and symbol.upper() in self._by_symbol


def priced_asset(symbol: str) -> Asset:
    """Return the asset of a symbol the account was given a price for but no listing.

    Permissive like the paper broker before it had an asset master, so tests that name a symbol
    by pricing it keep trading it.
    """
    return Asset(symbol, name=f"{symbol.upper()} (priced, not listed)")


def select_assets(
    assets: Iterable[Asset],
    *,
    status: str | None = None,
    asset_class: str | None = None,
    exchange: str | None = None,
    attributes: str | None = None,
) -> list[Asset]:
    """Filter assets as `GET /v2/assets` does, by symbol.

    Alpaca's documentation: every status unless one is asked for; ``asset_class`` defaults to
    us_equity (the only class here, so another known class lists nothing); ``attributes`` is a
    comma-separated list matched by any. An unknown status or class is refused (wording assumed).

    Raises:
        OrderRejected: 422 for a status or asset class Alpaca does not have.
    """
    if status not in {None, "", "active", "inactive"}:
        raise unprocessable(f"invalid status {status}")
    if asset_class not in {None, "", "us_equity", "us_option", "crypto", "crypto_perp"}:
        raise unprocessable(f"invalid asset_class {asset_class}")
    wanted = {a.strip() for a in (attributes or "").split(",") if a.strip()}
    return [
        asset
        for asset in sorted(assets, key=lambda a: a.symbol)
        if (not status or asset.status == status)
        and (asset_class or "us_equity") == asset.asset_class
        and (not exchange or asset.exchange == exchange.upper())
        and (not wanted or wanted & set(asset.attributes))
    ]


def load_assets(path: str | os.PathLike[str]) -> list[Asset]:
    """Read an asset file (see the module docstring).

    Raises:
        ConfigError: The file is missing or malformed ("assets.csv:7: ...").
    """
    name = os.fspath(path)
    try:
        with open(name, newline="", encoding="utf-8") as handle:
            return _parse(handle, name)
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read asset file: {exc.strerror or exc}") from exc


@functools.cache
def _shipped() -> tuple[Asset, ...]:
    text = resources.files("tradeguard.paper").joinpath("assets.csv").read_text(encoding="utf-8")
    return tuple(_parse(io.StringIO(text), "tradeguard/paper/assets.csv"))


def _parse(handle: Iterable[str], name: str) -> list[Asset]:
    reader = csv.DictReader(handle)
    columns = set(reader.fieldnames or ())
    if "symbol" not in columns:
        raise ConfigError(f"{name}:1: missing column symbol")
    unknown = columns - _COLUMNS
    if unknown:
        raise ConfigError(f"{name}:1: unknown column(s) {', '.join(sorted(unknown))}")
    assets = []
    for row in reader:
        where = f"{name}:{reader.line_num}"
        assets.append(_asset(row, where))
    return assets


def _asset(row: dict[str, str], where: str) -> Asset:
    def text(key: str) -> str:
        return (row.get(key) or "").strip()

    symbol = text("symbol").upper()
    if not symbol:
        raise ConfigError(f"{where}: empty symbol")
    asset = Asset(symbol, name=text("name"), id=text("id"))
    exchange = text("exchange").upper()
    if exchange:
        if exchange not in _EXCHANGES:
            raise ConfigError(f"{where}: unknown exchange {exchange!r}")
        asset = replace(asset, exchange=exchange)
    if text("class") not in {"", "us_equity"}:
        raise ConfigError(f"{where}: class {text('class')!r} is not traded here (only us_equity)")
    if text("status") not in {"", "active", "inactive"}:
        raise ConfigError(f"{where}: status must be active or inactive, got {text('status')!r}")
    flags: dict[str, Any] = {key: _flag(text(key), key, where) for key in _FLAGS if text(key)}
    margin = text("maintenance_margin_requirement")
    return replace(
        asset,
        status=text("status") or "active",
        maintenance_margin_requirement=_margin(margin, where) if margin else Decimal(30),
        attributes=tuple(a.strip() for a in text("attributes").split(";") if a.strip()),
        **flags,
    )


def _flag(value: str, key: str, where: str) -> bool:
    if value.lower() not in {"true", "false"}:
        raise ConfigError(f"{where}: {key} must be true or false, got {value!r}")
    return value.lower() == "true"


def _margin(value: str, where: str) -> Decimal:
    try:
        number = Decimal(value)
    except InvalidOperation:
        number = Decimal(-1)
    if not number.is_finite() or not 0 <= number <= 100:
        raise ConfigError(f"{where}: maintenance_margin_requirement must be 0 to 100, got {value!r}")
    return number
