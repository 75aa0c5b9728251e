"""The checks between a run and real money, and the Alpaca credentials they read.

A live run needs three things, checked in this order, the first two before any request: the
`--i-understand-this-is-live` flag; live keys (Alpaca's paper key ids start with ``PK``) and no
paper URL; and the account number typed back at a prompt after the account is read. Anything
else ends the run with one line and exit status 2, before an order could be sent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tradeguard.errors import ConfigError
from tradeguard.run.settings import Mode, RunSettings

if TYPE_CHECKING:
    from tradeguard.broker.alpaca import AlpacaBroker

__all__ = ["KEY_ENV", "SECRET_ENV", "Credentials", "check_before_connecting", "confirm_live_account"]

KEY_ENV = "APCA_API_KEY_ID"
SECRET_ENV = "APCA_API_SECRET_KEY"  # noqa: S105 - the variable's name, not a secret
_PAPER_KEY_PREFIX = "PK"  # Alpaca issues paper key ids as PK..., live ones as AK...


@dataclass(frozen=True, slots=True)
class Credentials:
    """Alpaca API keys, read from the environment at the command's edge; the secret never prints."""

    key_id: str
    secret: str = field(repr=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Credentials | None:
        """Return the keys in `APCA_API_KEY_ID` / `APCA_API_SECRET_KEY`, or None unless both are set."""
        key, secret = environ.get(KEY_ENV, "").strip(), environ.get(SECRET_ENV, "").strip()
        return cls(key, secret) if key and secret else None

    @property
    def is_paper(self) -> bool:
        """Whether these are paper-trading keys."""
        return self.key_id.upper().startswith(_PAPER_KEY_PREFIX)


def check_before_connecting(settings: RunSettings, credentials: Credentials | None) -> None:
    """Refuse a run whose mode and credentials do not fit, before any network request.

    Raises:
        ConfigError: One line saying what is missing or wrong.
    """
    if settings.mode is Mode.SIM:
        if settings.url:
            raise ConfigError("--url names a paper server: use it with --mode paper (sim needs no server)")
        return
    if settings.mode is Mode.PAPER:
        if settings.url is None and credentials is None:
            raise ConfigError(
                f"paper mode needs Alpaca paper keys: set {KEY_ENV} and {SECRET_ENV}, "
                "or give --url of a tradeguard paper server"
            )
        return
    if not settings.live_confirmed:
        raise ConfigError("live mode trades real money: add --i-understand-this-is-live to go on")
    if settings.url:
        raise ConfigError(f"live mode refuses --url {settings.url}: it trades only on Alpaca's live endpoint")
    if credentials is None:
        raise ConfigError(f"live mode needs Alpaca live keys: set {KEY_ENV} and {SECRET_ENV}")
    if credentials.is_paper:
        raise ConfigError(f"live mode refuses paper keys ({KEY_ENV} starts with PK): use your live keys")
    if settings.faults:
        raise ConfigError("live mode refuses --faults: inject faults in sim or paper, never with real money")
    if settings.bars:
        raise ConfigError("live mode trades on live market data: --bars is for sim and paper")


def confirm_live_account(broker: AlpacaBroker, ask: Callable[[str], str]) -> str:
    """Show the live account and have its number typed back; return the number.

    Raises:
        ConfigError: The account cannot be read, or the number typed does not match.
    """
    try:
        account = broker.client.get_account()
    except Exception as exc:  # alpaca-py raises APIError, requests errors, pydantic errors alike
        raise ConfigError(f"live mode: cannot read the live account: {' '.join(str(exc).split())}") from exc
    number = str(getattr(account, "account_number", "") or "")
    equity = getattr(account, "equity", "?")
    prompt = (
        f"LIVE account {number} (equity ${equity}). Orders will be real.\n"
        "Type the account number to trade it: "
    )
    try:
        typed = ask(prompt).strip()
    except EOFError:
        raise ConfigError("live mode needs the account number typed at a prompt (no input)") from None
    if not number or typed != number:
        raise ConfigError("live mode: the account number typed does not match; nothing was sent")
    return number
