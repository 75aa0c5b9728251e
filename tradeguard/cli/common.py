"""What several commands share: exit statuses, the store and broker options, opening them.

Commands that read or correct a store open it with `open_existing_store`, which never creates
one: a missing SQLite file, or a database without tradeguard's schema, is an error naming it.
Only `db upgrade` (and the commands that trade: `run`, `demo`) may create a store.
"""

from __future__ import annotations

import enum
import json
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

import click

from tradeguard.config import DEFAULT_STORE_URL
from tradeguard.errors import ConfigError, StoreError, TradeguardError

if TYPE_CHECKING:
    from tradeguard.config import Settings
    from tradeguard.paper import PaperBroker
    from tradeguard.ports import Broker
    from tradeguard.store import ClaimStore

__all__ = [
    "EXIT_STATUSES",
    "STORE_ENV",
    "BrokerChoice",
    "ExitStatus",
    "Refused",
    "agent_id_callback",
    "broker_options",
    "broker_url",
    "cannot_listen",
    "check_port_free",
    "default_actor",
    "figure",
    "json_problem",
    "make_broker",
    "missing_sqlite_file",
    "open_existing_store",
    "open_paper_broker",
    "refuse_to_replace",
    "require_store",
    "schema_revision",
    "sqlite_file",
    "store_option",
    "symbol_callback",
    "url_option_callback",
]

STORE_ENV = "TRADEGUARD_STORE_URL"
_F = TypeVar("_F", bound=Callable[..., Any])


class ExitStatus(enum.IntEnum):
    """The exit statuses of every command."""

    OK = 0
    PROBLEM = 1  # the command ran and found something a person must look at
    BAD_INPUT = 2  # bad input or an expected failure, said in one line on stderr
    INTERRUPTED = 130  # Ctrl-C
    BROKEN_PIPE = 141  # the reader went away (`| head`): 128 + SIGPIPE, as the shell reports it


EXIT_STATUSES = (
    "Exit status: 0 ok; 1 found a problem a person must look at (reconcile drift or an orphan, "
    "db check behind or ahead, a claim resolution the broker contradicts, a chaos violation, a run "
    "stopped by an error); 2 bad input or an expected failure, said in one line on stderr; "
    "141 the reader of the output went away (| head)."
)


class Refused(TradeguardError):
    """The command ran and found a problem (exit 1, one line on stderr)."""


def store_option(func: _F) -> _F:
    """Add `--store URL` (env TRADEGUARD_STORE_URL)."""
    return click.option(
        "--store",
        "store_url",
        metavar="URL",
        envvar=STORE_ENV,
        show_envvar=True,
        default=DEFAULT_STORE_URL,
        show_default=True,
        help="Claim store: sqlite:///path.db or postgresql+psycopg://user@host/db.",
    )(func)


def _read_revision(url: str) -> str | None:
    return _read_one(url, "alembic_version", "SELECT version_num FROM alembic_version", "the schema version")


def read_store_id(url: str) -> str | None:
    """Return the store's id (`ClaimStore.store_id`) without changing anything; None if it has none yet.

    Raises:
        StoreError: The database cannot be read.
    """
    return _read_one(url, "tg_store", "SELECT store_id FROM tg_store", "the store's id")


def _read_one(url: str, table: str, sql: str, what: str) -> str | None:
    """Return the one value `sql` reads from `table`, None without the table; never creates anything."""
    from sqlalchemy import inspect, text

    from tradeguard.store.engine import open_engine, translate_errors

    engine = open_engine(url, migrate=False)
    try:
        with translate_errors(engine.url, f"reading {what}"), engine.connect() as conn:
            if not inspect(conn).has_table(table):
                return None
            value = conn.execute(text(sql)).scalar()
            return None if value is None else str(value)
    finally:
        engine.dispose()


def sqlite_file(url: str) -> str | None:
    """Return the file of a SQLite store URL (None for PostgreSQL).

    Raises:
        StoreError: The URL is unusable.
    """
    from tradeguard.store.engine import parse_url

    parsed = parse_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    return (parsed.database or "").removeprefix("file:")


def schema_revision(url: str) -> str | None:
    """Return the store's schema revision, or None when the database holds no tradeguard schema.

    Never creates anything: a missing SQLite file is an error naming it.

    Raises:
        StoreError: The URL is unusable, the SQLite file is missing, or the database unreachable.
    """
    path = sqlite_file(url)
    if path is not None and not os.path.isfile(path):
        if os.path.isdir(path):
            raise StoreError(f"no claim store at {path}: {path} is a directory, not a SQLite file")
        if os.path.exists(path):
            raise StoreError(f"no claim store at {path}: {path} is not a regular file")
        raise StoreError(f"no claim store at {path} (the SQLite file does not exist)")
    return _read_revision(url)


def missing_sqlite_file(store_url: str) -> str | None:
    """Return the absolute path of the SQLite file `store_url` names if it does not exist yet.

    None for PostgreSQL, an in-memory database, or a file that exists. For the commands that may
    create a store (`serve`, `keys create`), to say so: a mistyped path would otherwise become a
    new, empty store without a word.
    """
    database = sqlite_file(store_url)
    if not database or database.startswith(":memory:"):
        return None
    return None if os.path.exists(database) else os.path.abspath(database)


def require_store(url: str) -> None:
    """Refuse a store that does not exist yet: a missing SQLite file or a database with no schema.

    Raises:
        StoreError: No such store (named), or it cannot be reached.
    """
    from tradeguard.store.engine import describe, parse_url

    if schema_revision(url) is None:
        raise StoreError(
            f"{describe(parse_url(url))} holds no tradeguard claim store (no schema); "
            "`tradeguard db upgrade` creates one"
        )


def open_existing_store(url: str, settings: Settings | None = None) -> ClaimStore:
    """Open the store at `url` for a command that reads or corrects it; never create one.

    `settings` None: from `TRADEGUARD_<FIELD>` variables, as every command takes them (the
    store's own, say `TRADEGUARD_SQLITE_BUSY_TIMEOUT_MS`, matter to a read too).

    Raises:
        StoreError: No such store (named), or it cannot be opened.
        ConfigError: A `TRADEGUARD_<FIELD>` variable is bad.
    """
    from tradeguard.config import Settings
    from tradeguard.store import ClaimStore

    require_store(url)
    return ClaimStore(url, settings=settings or Settings.from_env(), must_exist=True)


def refuse_to_replace(path: str, option: str, *, force: bool) -> None:
    """Refuse to write over an existing file without --force, as `tradeguard import` refuses it.

    The file there may be a recorded session, a paper state file or an earlier export: recorded
    data a mistyped name would wipe. Only a regular file (or a link to one) is kept: a FIFO or a
    device (`/dev/stdout`, a shell's `>(...)`) holds nothing to lose.

    Raises:
        ConfigError: `path` is an existing file and `force` is False.
    """
    if not force and os.path.isfile(path):
        raise ConfigError(f"{option} {path} exists: pass --force to replace it, or give another name")


FORCE_HELP = "Replace the file if it exists."


def check_port_free(host: str, port: int) -> None:
    """Refuse a port another process listens on, before a server builds anything (`serve`, `paper-server`).

    Raises:
        ConfigError: "cannot listen on HOST:PORT: Address already in use" (or why else not).
    """
    # Port 0 too: it names no port, but the host must still be an address of this machine (a
    # mistyped --host would otherwise fail only inside uvicorn, after its start-up log).
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind
        try:
            probe.bind((host, port))
        except (OSError, UnicodeError, OverflowError) as exc:  # gaierror for a name that resolves to nothing
            raise ConfigError(cannot_listen(host, port, exc)) from exc


def cannot_listen(host: str, port: int, exc: Exception) -> str:
    """Say why a server cannot listen on host:port, in the words `serve` and `paper-server` share."""
    if isinstance(exc, socket.gaierror | UnicodeError):
        why = getattr(exc, "strerror", None) or exc
        return f"cannot listen on {host}:{port}: {host} is no address of this machine ({why})"
    return f"cannot listen on {host}:{port}: {getattr(exc, 'strerror', None) or exc}"


def _each(value: Any, check: Callable[[str], str], param: click.Parameter) -> Any:
    """Apply `check` to an option's value (None, one string, or a tuple of them), naming the option."""
    if value is None:
        return None
    try:
        if isinstance(value, tuple):
            return tuple(check(v) for v in value)
        return check(value)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param=param) from None


def _symbol(text: str) -> str:
    from tradeguard.domain.intents import check_symbol
    from tradeguard.domain.orders import canonical_symbol

    symbol = canonical_symbol(text)
    check_symbol(symbol)
    return symbol


def _agent_id(text: str) -> str:
    from tradeguard.domain.intents import check_agent_id

    check_agent_id(text)
    return text


def symbol_callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Spell a --symbol as every Intent keys it ("tqqq" -> "TQQQ", "BTCUSD" -> "BTC/USD"); refuse junk.

    The ledger and the claims hold the canonical spelling (`domain.orders.canonical_symbol`), so
    an operator's lower case or Alpaca's listing spelling of a pair must name the same position.
    """
    return _each(value, _symbol, param)


def agent_id_callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Refuse an agent id no claim can have (empty, spaces, over 64 characters), naming the option."""
    return _each(value, _agent_id, param)


def figure(text: str, option: str) -> Decimal:
    """Return a quantity or price given on the command line: finite and below `FIGURE_LIMIT` in size.

    Raises:
        ConfigError: Not a number, not finite, or 10**12 or more (as a session file refuses it).
    """
    from tradeguard.domain.intents import FIGURE_LIMIT, to_decimal

    number = to_decimal(text, option)
    if abs(number) >= FIGURE_LIMIT:
        raise ConfigError(f"{option} must be less than {FIGURE_LIMIT:,} in size, got {text!r}")
    return number


def default_actor() -> str:
    """Return who is at the keyboard, for audit records ($USER, else "operator")."""
    return os.environ.get("USER") or os.environ.get("USERNAME") or "operator"


@dataclass(frozen=True, slots=True)
class BrokerChoice:
    """The broker options of a command: a paper server, a paper state file, or Alpaca."""

    paper_url: str | None
    paper_state: str | None
    live: bool

    @property
    def configured(self) -> bool:
        """True when an option or the Alpaca keys in the environment name a broker."""
        keys = os.environ.get("APCA_API_KEY_ID") and os.environ.get("APCA_API_SECRET_KEY")
        return bool(self.paper_url or self.paper_state or keys)


_EXPECTED_URL = ": expected http(s)://HOST[:PORT], e.g. http://127.0.0.1:8765"


def broker_url(value: str, option: str) -> str:
    """Return `value` if it can be a broker's base URL, for `option`; else refuse it in one line.

    Checked before anything is sent: requests would refuse such a URL only when the first read
    goes out, and a pass that cannot read the broker looks like a broker that is down (exit 1)
    rather than an option mistyped (exit 2).

    Raises:
        ConfigError: No http(s) scheme, no host, a space or an impossible port, naming the option.
    """
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(value)
    except ValueError as exc:  # "Invalid IPv6 URL"
        raise ConfigError(f"{option} {value!r} is not a broker URL ({exc}){_EXPECTED_URL}") from None
    why = None
    if any(c.isspace() for c in value):
        why = "a space in it"
    elif not parts.scheme or "://" not in value:
        why = "no scheme"
    elif parts.scheme.lower() not in ("http", "https"):
        why = f"scheme {parts.scheme}, not http or https"
    elif not parts.hostname:
        why = "no host"
    else:
        try:
            port = parts.port  # reading it checks it: out of range or not a number raises
        except ValueError:
            port = 0
        if port == 0:
            why = f"port {parts.netloc.rpartition(':')[2]} is not 1-65535"
    if why is not None:
        raise ConfigError(f"{option} {value!r} is not a broker URL ({why}){_EXPECTED_URL}")
    return value


def url_option_callback(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Check a broker URL option as Click reads it (see `broker_url`)."""
    return None if value is None else broker_url(value, param.opts[0])


def broker_options(func: _F) -> _F:
    """Add --paper-url, --paper-state and --live (default: Alpaca paper with the APCA_* keys)."""
    for option in reversed(
        (
            click.option(
                "--paper-url",
                metavar="URL",
                callback=url_option_callback,
                help="A tradeguard paper server, e.g. http://127.0.0.1:8765 (instead of Alpaca).",
            ),
            click.option(
                "--paper-state",
                metavar="FILE",
                help="An in-process paper account kept in this JSON file (instead of Alpaca).",
            ),
            click.option(
                "--live",
                is_flag=True,
                help="Alpaca's live endpoint instead of paper (keys: APCA_API_KEY_ID, APCA_API_SECRET_KEY).",
            ),
        )
    ):
        func = option(func)
    return func


def json_problem(exc: json.JSONDecodeError) -> str:
    """Say what is wrong with JSON text and at which column, in words.

    `JSONDecodeError.msg` is written to be followed by ": line L column C"; "Unterminated string
    starting at" already ends in "at".
    """
    joint = " column" if exc.msg.endswith(" at") else " at column"
    return f"{exc.msg}{joint} {exc.colno}"


def open_paper_broker(**options: Any) -> PaperBroker:
    """Return `PaperBroker(**options)`; a state file it cannot read is said in words.

    The paper package names the parse error by its repr (`JSONDecodeError('Expecting ...: line
    1 column 2 (char 1)')`); a command line says "Expecting ... at column 2".

    Raises:
        ConfigError: The state file (or another option) is unusable.
    """
    from tradeguard.paper import PaperBroker

    try:
        return PaperBroker(**options)
    except ConfigError as exc:
        cause = exc.__cause__
        if cause is not None and repr(cause) in str(exc):
            words = _state_problem(cause)
            if words is not None:
                raise ConfigError(str(exc).replace(repr(cause), words)) from cause
        raise


def _state_problem(cause: BaseException) -> str | None:
    """Say in words why a paper state file could not be read (the paper package gives a repr)."""
    from decimal import InvalidOperation

    if isinstance(cause, json.JSONDecodeError):
        return json_problem(cause)
    if isinstance(cause, KeyError):
        return f"no {cause.args[0]!r} field" if cause.args else "a field is missing"
    if isinstance(cause, InvalidOperation):
        return "a figure that is not a number"
    if isinstance(cause, ValueError):
        return str(cause)
    if isinstance(cause, AttributeError | TypeError):
        return "not the shape of tradeguard's paper state (a JSON object: version, cash, positions, orders)"
    return None


def make_broker(choice: BrokerChoice, settings: Settings) -> Broker:
    """Build the broker the options name.

    Raises:
        ConfigError: Two accounts named, a missing paper state file, or no broker at all.
    """
    if choice.paper_state and choice.paper_url:
        raise ConfigError("--paper-url and --paper-state name two different accounts; give one")
    if choice.paper_state:
        if not os.path.isfile(choice.paper_state):
            # A mistyped path must not read as a flat account (every position a phantom).
            why = "is a folder, not a file" if os.path.isdir(choice.paper_state) else "does not exist"
            raise ConfigError(f"paper state file {choice.paper_state} {why}")
        return open_paper_broker(state_path=choice.paper_state)
    from tradeguard.broker.alpaca import AlpacaBroker

    if choice.paper_url:
        return AlpacaBroker.from_credentials(
            "paper", "paper", url_override=choice.paper_url, settings=settings
        )
    key, secret = os.environ.get("APCA_API_KEY_ID"), os.environ.get("APCA_API_SECRET_KEY")
    if not key or not secret:
        raise ConfigError(
            "no broker: set APCA_API_KEY_ID and APCA_API_SECRET_KEY, or pass --paper-url / --paper-state"
        )
    return AlpacaBroker.from_credentials(key, secret, paper=not choice.live, settings=settings)
