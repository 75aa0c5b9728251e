"""PostgreSQL: what the claim store's step functions cost inside the server, schema variants side by side.

Usage::

    python bench/claims_functions.py [--pg-url URL] [--n 1000] [--repeats 3]
                                     [--variant "NAME=SQL; SQL"]... [--variant NAME=@FILE]...

Each variant is a throw-away schema migrated to the head and then altered by its SQL, given
inline or read from a file (`@FILE`; sent as one simple query, so it may replace a function);
the first is always the store as shipped. One `DO` block calls, per iteration and for every schema in
turn, `tg_claim` (a new claim), `tg_move_step` to SUBMITTED and `tg_move_step` to CANCELED (a
terminal move, as a fill's claim update is), and a plain one-row `INSERT` as a floor, timing
each call with `clock_timestamp()`; it prints each call's median in µs and the ratio of each
variant's sum to the shipped schema's. Nothing crosses the network and the calls of all
variants alternate one by one, so a noisy neighbour slows every variant alike: on a shared
machine this is the steady way to compare schemas and function bodies, where end-to-end
figures (`bench/claims.py`) swing by more than the differences sought. Every schema's functions
are recreated with their tables named by schema, so that a call by qualified name reaches that
schema's tables. The fill's function (`tg_fill_step`, with the ledger) is not
called; the claim row's update in it is the terminal move's.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import statistics
import sys
from contextlib import ExitStack
from pathlib import Path

if importlib.util.find_spec("tradeguard") is None:  # a plain checkout: run from the repository
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from claims_kit import RAW_TABLE, pg_schema, psycopg_url

_CALLS = """
    t0 := clock_timestamp();
    PERFORM * FROM {s}.tg_claim(k, 'c' || k, 'bench', 'entry', 'QQQ', 'buy', 'x-' || k,
      '{{"qty":"1","side":"buy","symbol":"QQQ","time_in_force":"day","type":"market"}}',
      left(k, 32), 'owner', now(), NULL, NULL, '', now(),
      now(), 'bench', 'claim', 'claimed', 'entry', 'QQQ', 'buy', '1', 'PENDING', NULL, 'c' || k, k,
      '{{"intent":"x"}}');
    t1 := clock_timestamp();
    PERFORM * FROM {s}.tg_move_step('off', 'SUBMITTED', now(), 'accepted', NULL, NULL, NULL, 'b-1',
      NULL, NULL, NULL, NULL, NULL, 0, k, 'PENDING', 1, 1, '0',
      now(), 'bench', 'transition', 'accepted', 'entry', 'QQQ', 'buy', NULL, 'SUBMITTED', 'PENDING',
      'c' || k, k, NULL);
    t2 := clock_timestamp();
    PERFORM * FROM {s}.tg_move_step('off', 'CANCELED', now(), 'canceled', NULL, NULL, NULL, NULL,
      NULL, NULL, NULL, NULL, NULL, 0, k, 'SUBMITTED', 1, 1, '0',
      now(), 'bench', 'transition', 'canceled', 'entry', 'QQQ', 'buy', NULL, 'CANCELED',
      'SUBMITTED', 'c' || k, k, NULL);
    t3 := clock_timestamp();
    INSERT INTO {s}.bench_raw (k, agent, payload, at) VALUES (k, 'bench', 'x', now());
    t4 := clock_timestamp();
    m{j} := m{j} || ARRAY[extract(epoch FROM t1 - t0), extract(epoch FROM t2 - t1),
                         extract(epoch FROM t3 - t2), extract(epoch FROM t4 - t3)]::float8[];
"""
STEPS = ("claim", "SUBMITTED", "terminal", "raw INSERT")
# Each schema's step functions are recreated with their tables named by schema, so a call by
# qualified name reaches that schema's tables whatever the session's search_path.
_DEFINITIONS = (
    "SELECT pg_get_functiondef(p.oid) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
    " WHERE n.nspname = %s AND p.proname IN ('tg_claim', 'tg_move_step')"
)
_TABLE_NAME = re.compile(r'(?<![."\w])(tg_claims|tg_audit|tg_turns)\b')


def _do_block(schemas: list[str], n: int) -> str:
    declare = " ".join(f"m{j} float8[] := '{{}}';" for j in range(len(schemas)))
    calls = "".join(_CALLS.format(s=s, j=j) for j, s in enumerate(schemas))
    out = " || ';' || ".join(f"array_to_string(m{j}, ',')" for j in range(len(schemas)))
    return (
        "DO $$ DECLARE t0 timestamptz; t1 timestamptz; t2 timestamptz; t3 timestamptz;"
        f" t4 timestamptz; k text; {declare} BEGIN FOR i IN 1..{n} LOOP"
        f" k := md5(random()::text || i); {calls} END LOOP; RAISE NOTICE '%', {out}; END $$"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pg-url", default=os.environ.get("TRADEGUARD_TEST_PG_URL"))
    parser.add_argument("--n", type=int, default=1000, help="iterations per run")
    parser.add_argument(
        "--repeats", type=int, default=3, help="runs, each starting at another variant; medians over all"
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help="NAME=SQL or NAME=@FILE, run in the schema after migration",
    )
    args = parser.parse_args(argv)
    if not args.pg_url:
        parser.error("--pg-url (or TRADEGUARD_TEST_PG_URL) is required")
    import psycopg

    from tradeguard.store import ClaimStore

    variants: list[tuple[str, str]] = [("shipped", "")]
    for given in args.variant:
        name, _, sql = given.partition("=")
        variants.append((name.strip(), Path(sql[1:]).read_text() if sql.startswith("@") else sql))
    base = args.pg_url.replace("postgresql://", "postgresql+psycopg://", 1)
    with ExitStack() as stack:
        schemas = []
        for _name, sql in variants:
            url = stack.enter_context(pg_schema(base))
            ClaimStore(url).close()  # migrate to the head
            with psycopg.connect(psycopg_url(url), autocommit=True) as conn:
                schema = str(conn.execute("SELECT current_schema()").fetchone()[0])
                conn.execute(RAW_TABLE)
                if sql.strip():
                    conn.execute(sql)
                for (definition,) in conn.execute(_DEFINITIONS, (schema,)).fetchall():
                    conn.execute(_TABLE_NAME.sub(f'"{schema}".\\1', definition))
            schemas.append(f'"{schema}"')
        conn = stack.enter_context(psycopg.connect(psycopg_url(base), autocommit=True))
        notices: list[str] = []
        conn.add_notice_handler(lambda d: notices.append(str(d.message_primary)))
        samples: list[list[list[float]]] = [[[] for _ in STEPS] for _ in variants]
        for repeat in range(args.repeats):
            # Each run starts the rotation at another variant: the first call after the loop's
            # own work measured slower, and no variant should always be the one in that place.
            order = [(j + repeat) % len(schemas) for j in range(len(schemas))]
            conn.execute(_do_block([schemas[j] for j in order], args.n))
            for j, part in zip(order, notices.pop().split(";"), strict=True):
                values = [float(v) * 1e6 for v in part.split(",")]
                for step in range(len(STEPS)):
                    samples[j][step] += values[step :: len(STEPS)]
    medians = [[statistics.median(xs) for xs in per_step] for per_step in samples]
    print(f"in-server µs per call, median of {args.n} x {args.repeats}, variants interleaved call by call")
    print(f"{'variant':<40}" + "".join(f"{s:>12}" for s in STEPS) + f"{'3 steps':>10}{'/ shipped':>11}")
    shipped = sum(medians[0][:3])
    for (name, _), m in zip(variants, medians, strict=True):
        total = sum(m[:3])
        print(f"{name:<40}" + "".join(f"{v:>12.1f}" for v in m) + f"{total:>10.1f}{total / shipped:>11.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
