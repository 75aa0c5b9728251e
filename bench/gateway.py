"""What the guard costs per order: OrderGateway.enter beside safeagent-exec-guard and the bare broker.

Usage: python bench/gateway.py [--quick] [--n 1500] [--rounds 5] [--repeats 3] [--pg-url URL]

Every figure is the median of ``--repeats`` runs; each run interleaves its cases (``--rounds``
slices of ``n / rounds`` calls) on fresh files in one folder of this repository's disk:

* ``guarded enter``: ``OrderGateway.enter`` on a SQLite file and the in-process PaperBroker (a
  market order fills on submit): the durable claim, the send, the fill with its ledger turn and
  every audit record;
* ``safeagent claim+settle``: safeagent-exec-guard's durable claim and settle of one action, the
  peer's cost for "at most once" without a broker call, ledger or audit log;
* ``broker directly``: the same PaperBroker order without the guard;
* ``store steps of enter``: the store calls ``enter`` makes (claim, then the FILLED transition
  with its fill), without the gateway around them: ``enter`` minus this minus the broker is the
  gateway's own Python;
* ``guarded retry (duplicate)``: ``enter`` again with an intent already sent (one claim read, one
  broker lookup, one skip record: an autocommit insert, not fsynced), beside safeagent's claim of
  an existing action;
* with ``--pg-url``: ``guarded enter`` on PostgreSQL beside one durable raw INSERT, and the
  duplicate retry on PostgreSQL (a round trip for the claim read, one for the skip record:
  BEGIN, SET LOCAL synchronous_commit = off, the INSERT and COMMIT sent together).
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import statistics
import sys
import tempfile
import uuid
from contextlib import ExitStack
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from claims_kit import Op, pg_insert_op, pg_schema, run_interleaved, safeagent_ops

from tradeguard import ClaimStore, OrderGateway, OrderRequest, PaperBroker, Settings, Side
from tradeguard.domain.intents import Intent, Kind, OrderSpec
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.store import new_owner_token

ENTER, SAFEAGENT, DIRECT = "guarded enter, sqlite", "safeagent claim+settle", "broker directly"
STEPS, RETRY = "store steps of enter, sqlite", "guarded retry (duplicate), sqlite"
SA_DUP = "safeagent duplicate"
PG_ENTER, PG_INSERT = "guarded enter, postgresql", "pg durable INSERT (raw psycopg)"
PG_RETRY = "guarded retry (duplicate), postgresql"


def gateway_ops(stack: ExitStack, url: str) -> tuple[Op, Op]:
    """Return (enter a new decision, retry a decision already sent) through a fresh gateway."""
    store = stack.enter_context(ClaimStore(url, settings=Settings()))
    paper = PaperBroker(cash=Decimal(10) ** 12)
    gateway = OrderGateway(paper, store, agent_id=f"bench-{uuid.uuid4().hex[:6]}", reconcile_on_start=False)
    fresh, sent = itertools.count(), []

    def enter(_i: int) -> None:
        intent = f"bench {next(fresh)}"
        gateway.enter("TQQQ", qty=1, intent=intent)
        sent.append(intent)

    def retry(i: int) -> None:
        gateway.enter("TQQQ", qty=1, intent=sent[i % len(sent)])

    return enter, retry


def store_steps_op(stack: ExitStack, url: str) -> Op:
    """The store calls of one `enter`: the claim, then FILLED with its fill (no gateway, no broker)."""
    store = stack.enter_context(ClaimStore(url))
    owner, spec, run = new_owner_token(), OrderSpec(qty=Decimal(1)), uuid.uuid4().hex[:6]
    fresh = itertools.count()

    def op(_i: int) -> None:
        intent = Intent("steps", Kind.ENTRY, "TQQQ", Side.BUY, f"{run}-{next(fresh)}")
        claim = store.claim(intent, spec, owner=owner).claim
        store.transition(
            claim, ClaimState.FILLED, reason="filled", broker_order_id="b", filled_qty=Decimal(1),
            filled_avg_price=Decimal(100),
        )  # fmt: skip

    return op


def direct_op() -> Op:
    """A PaperBroker market order without the guard."""
    paper = PaperBroker(cash=Decimal(10) ** 12)
    fresh = itertools.count()

    def op(_i: int) -> None:
        paper.submit_order(OrderRequest("TQQQ", Side.BUY, f"direct-{next(fresh)}", qty=Decimal(1)))

    return op


def one_run(folder: Path, pg_url: str | None, n: int, rounds: int) -> dict[str, float]:
    """Run every case interleaved once; return p50 µs per case."""
    with ExitStack() as stack:
        enter, retry = gateway_ops(stack, f"sqlite:///{folder / 'gateway.db'}")
        sa_cycle, sa_dup = safeagent_ops(stack, folder)
        cases: dict[str, Op] = {
            ENTER: enter,
            SAFEAGENT: sa_cycle,
            DIRECT: direct_op(),
            STEPS: store_steps_op(stack, f"sqlite:///{folder / 'steps.db'}"),
            RETRY: retry,
            SA_DUP: sa_dup,
        }
        if pg_url:
            url = stack.enter_context(pg_schema(pg_url))
            cases[PG_ENTER], cases[PG_RETRY] = gateway_ops(stack, url)
            cases[PG_INSERT] = pg_insert_op(stack, url)
        samples = run_interleaved(cases, n, rounds)
    return {name: statistics.median(xs) * 1e6 for name, xs in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="300 calls per case: a smoke run")
    parser.add_argument("--n", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pg-url", default=os.environ.get("TRADEGUARD_TEST_PG_URL"))
    args = parser.parse_args()
    if args.quick:
        args.n, args.rounds = 300, 3
    here = Path(__file__).resolve().parent
    runs = []
    for _ in range(args.repeats):
        folder = Path(tempfile.mkdtemp(prefix="tg-gw-", dir=here))  # the project's disk, not tmpfs
        try:
            runs.append(one_run(folder, args.pg_url, args.n, args.rounds))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    p50 = {name: statistics.median(r[name] for r in runs) for name in runs[0]}
    load = os.getloadavg()[0]
    print(f"median of {args.repeats} interleaved runs, {args.n} calls per case each, load {load:.1f}")
    print(f"{'case':<38} {'p50 µs':>9}   per run")
    for name, value in p50.items():
        print(f"{name:<38} {value:>9.1f}   {' '.join(f'{r[name]:.0f}' for r in runs)}")
    print()
    ratios = [(ENTER, SAFEAGENT, "≤ 1.0"), (RETRY, SA_DUP, "")]
    if args.pg_url:
        ratios.append((PG_ENTER, PG_INSERT, ""))
    for mine, base, target in ratios:
        per_run = " ".join(f"{r[mine] / r[base]:.2f}" for r in runs)
        goal = f"  (target {target})" if target else ""
        print(f"{mine} / {base} = {p50[mine] / p50[base]:.2f}  [runs: {per_run}]{goal}")
    python = p50[ENTER] - p50[STEPS] - p50[DIRECT]
    print(f"gateway's own Python in enter ≈ enter - store steps - broker = {python:.0f} µs")
    print(f"guarded retry p50 = {p50[RETRY]:.0f} µs (target < 100 µs)")
    if args.pg_url:
        print(f"guarded retry on PostgreSQL p50 = {p50[PG_RETRY]:.0f} µs")


if __name__ == "__main__":
    main()
