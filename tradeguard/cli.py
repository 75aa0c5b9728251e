"""The `tradeguard` command: a thin layer over the same objects the library exports.

The environment is read here and only here (Alpaca keys, store URL); everything below gets
explicit arguments. Each command imports what it needs when it runs: `tradeguard --help` loads
neither the store (SQLAlchemy, Alembic) nor alpaca-py nor pandas, and `tradeguard audit` neither
alpaca-py nor pandas (tests/test_import_graph.py holds the last two).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING

from tradeguard.config import DEFAULT_STORE_URL, Settings
from tradeguard.errors import ConfigError, TradeguardError

if TYPE_CHECKING:
    from tradeguard.reconcile.runner import ReconcileReport

__all__ = ["main"]

STORE_ENV = "TRADEGUARD_STORE_URL"
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def _store_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        default=os.environ.get(STORE_ENV, DEFAULT_STORE_URL),
        help=f"claim store URL (env {STORE_ENV}; default {DEFAULT_STORE_URL})",
    )


def _broker_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "broker (default: Alpaca paper with APCA_API_KEY_ID / APCA_API_SECRET_KEY)"
    )
    group.add_argument("--paper-url", help="a tradeguard paper server, e.g. http://127.0.0.1:8765")
    group.add_argument("--paper-state", help="an in-process paper account kept in this JSON file")
    group.add_argument("--live", action="store_true", help="use Alpaca's live endpoint instead of paper")


def _make_broker(args: argparse.Namespace, settings: Settings):  # type: ignore[no-untyped-def]
    from tradeguard.broker.alpaca import AlpacaBroker

    if args.paper_state and args.paper_url:
        raise ConfigError("--paper-url and --paper-state name two different accounts; give one")
    if args.paper_state:
        from tradeguard.paper import PaperBroker

        if not os.path.isfile(args.paper_state):
            # A mistyped path must not read as a flat account (every position a phantom).
            raise ConfigError(f"paper state file {args.paper_state} does not exist")
        return PaperBroker(state_path=args.paper_state)
    if args.paper_url:
        return AlpacaBroker.from_credentials("paper", "paper", url_override=args.paper_url, settings=settings)
    key, secret = os.environ.get("APCA_API_KEY_ID"), os.environ.get("APCA_API_SECRET_KEY")
    if not key or not secret:
        raise TradeguardError(
            "no broker: set APCA_API_KEY_ID and APCA_API_SECRET_KEY, or pass --paper-url / --paper-state"
        )
    return AlpacaBroker.from_credentials(key, secret, paper=not args.live, settings=settings)


def _print_report(report: ReconcileReport) -> None:
    if report.aborted:
        print(f"reconcile aborted, nothing changed: {report.aborted}")
        return
    mode = "dry run: would apply" if report.dry_run else "applied"
    print(f"reconcile pass at {report.started_at:%Y-%m-%d %H:%M:%S}Z, {report.reads} broker read(s)")
    if not report.actions:
        print("nothing to do: claims and ledger agree with the broker")
        return
    rows = [("action", "agent", "symbol", "qty", "reason")]
    rows += [
        (a.kind.value, a.agent_id or "*", a.symbol, "" if a.qty is None else str(a.qty), a.reason)
        for a in report.actions
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths, strict=True)) + "  " + row[4])
    print(f"{mode} {len(report.actions if report.dry_run else report.applied)} action(s)")


def _cmd_reconcile(args: argparse.Namespace) -> int:
    from tradeguard.reconcile.runner import Reconciler
    from tradeguard.store import ClaimStore

    settings = Settings.from_env()
    broker = _make_broker(args, settings)  # broker configuration errors first: nothing opened yet
    with ClaimStore(args.store, settings=settings, must_exist=True) as store:
        reconciler = Reconciler(broker, store, settings=settings)
        report = reconciler.run(
            agent_id=args.agent_id,
            symbols=args.symbol or None,
            dry_run=args.dry_run,
            adopt_orphans_to=args.adopt_orphans_to,
        )
    _print_report(report)
    # 1: a problem a person must look at (an aborted pass, drift, an orphan, a missing order).
    return 1 if report.aborted or report.problems else 0


def _cmd_settle(args: argparse.Namespace) -> int:
    from tradeguard.domain.intents import to_decimal
    from tradeguard.store import ClaimStore

    qty = to_decimal(args.qty, "--qty")
    actor = args.actor or os.environ.get("USER") or "operator"
    with ClaimStore(args.store, must_exist=True) as store:
        before = store.settle_position(args.agent_id, args.symbol, qty, reason=args.reason, actor=actor)
    print(f"{args.agent_id} {args.symbol}: ledger {before} -> {qty} (settled by {actor}: {args.reason})")
    return 0


def _parse_time(value: str) -> datetime:
    when = datetime.fromisoformat(value)
    if when.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{value!r} needs a timezone, e.g. 2026-05-21T09:30-04:00")
    return when


def _cmd_audit(args: argparse.Namespace) -> int:
    from tradeguard.store import AuditQuery, ClaimStore

    query = AuditQuery(
        agent_id=args.agent_id,
        actions=tuple(args.action or ()),
        kind=args.kind,
        state=args.state,
        symbol=args.symbol,
        since=args.since,
        until=args.until,
    )
    with ClaimStore(args.store) as store:
        if args.csv:
            count = store.export_audit_csv(args.csv, query)
            print(f"wrote {count} audit record(s) to {args.csv}")
            return 0
        for rec in store.audit_page(query, after_id=args.after_id, limit=args.limit):
            print(
                f"{rec.id:>6} {rec.at:%Y-%m-%d %H:%M:%S} {rec.agent_id:<12} {rec.action:<10} "
                f"{rec.symbol or '':<6} {rec.side or '':<4} {rec.qty or '':>8} {rec.state or '':<16} "
                f"{rec.reason}"
            )
    return 0


def _paper_server_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: loopback)")
    parser.add_argument("--port", type=int, default=8765, help="TCP port; 0 picks a free one (default 8765)")
    parser.add_argument("--faults", metavar="PLAN", help="fault plan to inject (YAML or JSON)")
    parser.add_argument(
        "--state", metavar="FILE", help="JSON file that keeps the paper account across restarts"
    )
    parser.add_argument("--cash", default="100000", help="starting cash of a new account (default 100000)")
    parser.add_argument("--allow-short", action="store_true", help="let sells open short positions")
    parser.add_argument(
        "--bars", metavar="CSV", help="bar file (timestamp,symbol,...,close) giving fill prices"
    )
    parser.add_argument(
        "--price", action="append", default=[], metavar="SYMBOL=PRICE", help="pin a fill price (repeatable)"
    )
    parser.add_argument(
        "--assets",
        metavar="CSV",
        help="asset file adding symbols to the shipped list (symbol,name,exchange,shortable,...)",
    )


def _cash(text: str) -> Decimal:
    try:
        cash = Decimal(text)
    except InvalidOperation:
        cash = Decimal(-1)
    if not cash.is_finite() or cash < 0:
        raise ConfigError(f"--cash wants an amount of dollars, got {text!r}")
    return cash


def _cmd_paper_server(args: argparse.Namespace) -> int:
    """Run the paper server until Ctrl-C or SIGTERM; return the exit status."""
    from tradeguard.faults import FaultPlan
    from tradeguard.paper import PaperBroker
    from tradeguard.paper.prices import CsvBarPrices
    from tradeguard.paper.server import PaperServer, serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        plan = FaultPlan.load(args.faults) if args.faults else None
        broker = PaperBroker(
            prices=CsvBarPrices(args.bars) if args.bars else None,
            cash=_cash(str(args.cash)),
            allow_short=args.allow_short,
            state_path=args.state,
            assets_path=args.assets,
        )
        for pin in args.price:
            symbol, sep, price = pin.partition("=")
            if not sep:
                raise ConfigError(f"--price wants SYMBOL=PRICE, got {pin!r}")
            broker.set_price(symbol, price)
        server = PaperServer(broker, host=args.host, port=args.port, fault_plan=plan).start()
    except (ConfigError, OSError) as exc:
        print(f"tradeguard paper-server: {exc}", file=sys.stderr)
        return 2

    def announce(running: PaperServer) -> None:
        print(f"paper server listening on {running.url} (any API key works; Ctrl-C stops it)", flush=True)
        if args.host not in _LOOPBACK:
            print(
                f"warning: {args.host} is not loopback: anyone who can reach it can trade here",
                file=sys.stderr,
            )
        if plan is not None:
            print(f"fault plan {args.faults}: {len(plan.faults)} fault(s), seed {plan.seed}", flush=True)

    serve(server, on_ready=announce)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from tradeguard.demo import run_demo

    return run_demo(store_url=args.store, agent_id=args.agent_id)


def _cmd_replay(args: argparse.Namespace) -> int:
    from replay.cli import run_replay

    return run_replay(
        args.session,
        guard=args.guard,
        compare=args.compare,
        as_json=args.json,
        plot=args.plot,
        report=args.report,
    )


def _replay_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("session", help="a session file (JSON Lines), or the name of a shipped one")
    parser.add_argument(
        "--guard", default="full", choices=["none", "entry-only", "full"], help="guard mode (default full)"
    )
    parser.add_argument("--compare", action="store_true", help="run the three modes side by side")
    parser.add_argument("--json", action="store_true", help="print one JSON object (per mode with --compare)")
    parser.add_argument(
        "--plot", metavar="FILE.png", help="draw position over the session per mode (matplotlib)"
    )
    parser.add_argument("--report", metavar="FILE.html", help="write a self-contained HTML report")


def _cmd_import(args: argparse.Namespace) -> int:
    from replay.cli import run_import

    return run_import(args.kind, args.file, args.output, as_json=args.json)


def _import_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", choices=["alpaca-orders", "bot-log", "claims"], help="what FILE is")
    parser.add_argument("file", help="the order history, log or claim export to read")
    parser.add_argument("-o", "--output", required=True, metavar="SESSION.jsonl", help="the session to write")
    parser.add_argument("--json", action="store_true", help="print what was found as one JSON object")


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the `tradeguard` command."""
    parser = argparse.ArgumentParser(
        prog="tradeguard", description="Exactly-once order execution for Alpaca bots."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser(
        "demo", help="run a guarded bot against the paper broker with injected faults (no keys)"
    )
    demo.add_argument("--store", default=os.environ.get(STORE_ENV, DEFAULT_STORE_URL), help="claim store URL")
    demo.add_argument("--agent-id", default="demo-bot")
    demo.set_defaults(func=_cmd_demo)

    rec = sub.add_parser("reconcile", help="hold claims and ledger against the broker; print the actions")
    _store_arg(rec)
    _broker_args(rec)
    rec.add_argument("--dry-run", action="store_true", help="show the actions without applying them")
    rec.add_argument("--agent-id", help="only this agent's claims and ledger")
    rec.add_argument("--symbol", action="append", help="only this symbol (repeatable)")
    rec.add_argument(
        "--adopt-orphans-to", metavar="AGENT", help="take unowned broker positions into AGENT's ledger"
    )
    rec.set_defaults(func=_cmd_reconcile)

    settle = sub.add_parser(
        "settle",
        help="set one agent's ledger position after drift the reconciler cannot attribute (audited)",
    )
    _store_arg(settle)
    settle.add_argument("--agent-id", required=True, help="the agent whose ledger is settled")
    settle.add_argument("--symbol", required=True, help="the symbol, e.g. TQQQ")
    settle.add_argument("--qty", required=True, help="what the agent really holds (signed; 0 = flat)")
    settle.add_argument("--reason", required=True, help="why, for the audit log")
    settle.add_argument("--actor", help="who settles it (default: $USER)")
    settle.set_defaults(func=_cmd_settle)

    aud = sub.add_parser("audit", help="read or export the audit log")
    _store_arg(aud)
    aud.add_argument("--agent-id")
    aud.add_argument(
        "--action", action="append", help="claim, skip, transition, takeover, ledger, reconcile, error"
    )
    aud.add_argument("--kind", choices=["entry", "exit"])
    aud.add_argument("--state")
    aud.add_argument("--symbol")
    aud.add_argument("--since", type=_parse_time, help="ISO time with zone")
    aud.add_argument("--until", type=_parse_time, help="ISO time with zone")
    aud.add_argument("--after-id", type=int, default=0, help="page: records after this id")
    aud.add_argument("--limit", type=int, default=100)
    aud.add_argument("--csv", help="write all matching records to this CSV file")
    aud.set_defaults(func=_cmd_audit)

    paper = sub.add_parser(
        "paper-server", help="serve a paper account over Alpaca's REST routes on 127.0.0.1"
    )
    _paper_server_args(paper)
    paper.set_defaults(func=_cmd_paper_server)

    from tradeguard.run.command import add_run_command  # `tradeguard run` lives in tradeguard.run

    add_run_command(sub)
    from tradeguard.chaos.command import add_chaos_command  # `tradeguard chaos` lives in tradeguard.chaos

    add_chaos_command(sub)
    rep = sub.add_parser(
        "replay", help="replay a recorded session in three guard modes; what each let through"
    )
    _replay_args(rep)
    rep.set_defaults(func=_cmd_replay)

    imp = sub.add_parser(
        "import", help="turn a bot log, an Alpaca order history or a claim export into a session"
    )
    _import_args(imp)
    imp.set_defaults(func=_cmd_import)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except TradeguardError as exc:
        print(f"tradeguard: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
