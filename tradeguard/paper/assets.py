"""The paper venue's asset master: which symbols trade, and how (Alpaca's `/v2/assets`).

A list of common US symbols ships with the package (`assets.csv`, flags as Alpaca showed them
when the list was made: a fair copy, not an authority). A file of the same columns adds symbols
or overrides shipped ones. Only ``symbol`` is required; a missing column takes the permissive
default (active, tradable, marginable, shortable, easy to borrow, fractionable, NASDAQ, 30%)::

    symbol,name,exchange,shortable,fractionable,attributes
    NEWCO,New Company Inc.,NYSE,false,false,ipo

``attributes`` is a ``;``-separated list. Asset ids are derived from the symbol unless an ``id``
column gives one.

A row of ``class`` crypto is a crypto pair ("BTC/USD"; "BTCUSD" is read as "BTC/USD"): its
missing columns take Alpaca's crypto defaults instead (exchange CRYPTO, not marginable, not
shortable, not easy to borrow, fractionable, 100%). The shipped list has a few common pairs.
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

from tradeguard.domain.orders import canonical_symbol, crypto_pair
from tradeguard.errors import ConfigError
from tradeguard.paper.orders import asset_id
from tradeguard.paper.refusals import unprocessable

__all__ = ["CRYPTO", "Asset", "AssetBook", "crypto_asset", "load_assets", "priced_asset", "select_assets"]

CRYPTO = "crypto"  # Alpaca's asset class of crypto pairs

# The exchanges alpaca-py's AssetExchange enum knows: anything else would fail its parsing.
_EXCHANGES = frozenset(
    {"AMEX", "ARCA", "ASCX", "BATS", "NYSE", "NASDAQ", "NYSEARCA", "FTXU", "CBSE", "GNSS", "ERSX", "OTC"}
    | {"CRYPTO"}
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
    def is_crypto(self) -> bool:
        """True for a crypto pair (Alpaca's crypto rules apply to its orders, not the equity ones)."""
        return self.asset_class == CRYPTO

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
        """Return the asset with this symbol (any case; a pair with or without its slash) or id, or None."""
        return self._by_symbol.get(canonical_symbol(symbol_or_id)) or self._by_id.get(symbol_or_id.strip())

    def __iter__(self) -> Iterator[Asset]:
        return iter(sorted(self._by_symbol.values(), key=lambda a: a.symbol))

    def __contains__(self, symbol: object) -> bool:
        return isinstance(symbol, str) and canonical_symbol(symbol) in self._by_symbol


def crypto_asset(pair: str, name: str = "", **fields: Any) -> Asset:
    """Return the asset of the crypto pair `pair` ("BTC/USD" or "BTCUSD") with Alpaca's crypto flags.

    Alpaca lists a pair as class crypto on exchange CRYPTO: fractionable, never shortable or
    marginable (margin requirement 100%). `fields` override any of them.

    Raises:
        ValueError: `pair` is not a crypto pair.
    """
    symbol = crypto_pair(pair)
    if symbol is None:
        raise ValueError(f"{pair!r} is not a crypto pair (BASE/QUOTE, quote USD, USDT, USDC or BTC)")
    flags: dict[str, Any] = {
        "name": name,
        "exchange": "CRYPTO",
        "asset_class": CRYPTO,
        "marginable": False,
        "shortable": False,
        "easy_to_borrow": False,
        "fractionable": True,
        "maintenance_margin_requirement": Decimal(100),
    }
    return Asset(symbol, **(flags | fields))


def priced_asset(symbol: str) -> Asset:
    """Return the asset of a symbol the account was given a price for but no listing.

    Permissive like the paper broker before it had an asset master, so tests that name a symbol
    by pricing it keep trading it. A crypto pair is a crypto asset: its orders follow the
    crypto rules whether or not it is listed.
    """
    name = f"{symbol.upper()} (priced, not listed)"
    if crypto_pair(symbol) is not None:
        return crypto_asset(symbol, name)
    return Asset(symbol, name=name)


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
    us_equity (crypto lists the pairs; the option classes list nothing here); ``attributes`` is a
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
    if text("class") not in {"", "us_equity", CRYPTO}:
        raise ConfigError(f"{where}: class {text('class')!r} is not traded here (only us_equity and crypto)")
    if text("class") == CRYPTO:
        if crypto_pair(symbol) is None:
            raise ConfigError(
                f"{where}: {symbol!r} is not a crypto pair (BASE/QUOTE, quote USD, USDT, USDC or BTC)"
            )
        asset = crypto_asset(symbol, text("name"), id=text("id"))
    else:
        asset = Asset(symbol, name=text("name"), id=text("id"))
    exchange = text("exchange").upper()
    if exchange:
        if exchange not in _EXCHANGES:
            raise ConfigError(f"{where}: unknown exchange {exchange!r}")
        asset = replace(asset, exchange=exchange)
    if text("status") not in {"", "active", "inactive"}:
        raise ConfigError(f"{where}: status must be active or inactive, got {text('status')!r}")
    flags: dict[str, Any] = {key: _flag(text(key), key, where) for key in _FLAGS if text(key)}
    margin = text("maintenance_margin_requirement")
    return replace(
        asset,
        status=text("status") or "active",
        maintenance_margin_requirement=(
            _margin(margin, where) if margin else asset.maintenance_margin_requirement
        ),
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
