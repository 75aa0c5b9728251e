"""Running a strategy the way a trader does: `tradeguard run`.

- `strategy`: the `Strategy` base class a bot subclasses, its `StrategyContext`, and the loader
  that finds a strategy by module or file path.
- `bars`: `Bar`, `Bars` (one minute of bars) and `BarSeries`; `barfile` reads and checks bar
  files (CSV, or Parquet when pyarrow is installed); `synth` generates a day from a seed; the
  shipped day lives in `data/`.
- `settings`: `RunSettings`, the one frozen object of a run, from a TOML file, the environment
  and the flags.
- `venue`: what a run trades against in each mode (sim, paper, live), with the live safety
  checks in `safety`; `assemble` builds the store and the gateway (the one place for both).
- `feeds`: where bars come from and at what pace (a bar file at once or on the wall clock,
  Alpaca's market data); `runner`: the loop, reconciliation, a clean stop; `summary` and
  `view`: what the trader sees; `command`: the `tradeguard run` arguments.

Nothing is imported here, so `tradeguard --help` stays light; import the modules themselves.
"""
