"""`RunSettings`: the one frozen settings object of `tradeguard run`, and where each value came from.

Values come from four places; a later one wins: the defaults, a TOML file (`--config FILE` or
`TRADEGUARD_CONFIG`), the environment (`TRADEGUARD_<FIELD>`, e.g. `TRADEGUARD_AGENT_ID`,
`TRADEGUARD_RECONCILE_INTERVAL_SECS`), then the command's flags. The file has a ``[run]`` table
of `RunSettings` fields and a ``[guard]`` table of `tradeguard.config.Settings` fields::

    [run]
    strategy = "strategies.momentum"
    mode = "paper"
    store_url = "sqlite:///momentum.db"

    [guard]
    reconcile_interval_secs = 30

The guard's own settings stay in `Settings` (composed here as `guard`, not copied). In `sim`, the
store comes only from the file or `--store`: `TRADEGUARD_STORE_URL` names a real bot's store,
and a simulated account must never be reconciled against it. Alpaca keys are not settings:
they are read at the command's edge and never printed.
"""

from __future__ import annotations

import enum
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from tradeguard.config import Settings
from tradeguard.errors import ConfigError

__all__ = [
    "CONFIG_ENV",
    "Mode",
    "RunSettings",
    "SettingSource",
    "ViewKind",
    "describe",
    "resolve_settings",
]

CONFIG_ENV = "TRADEGUARD_CONFIG"


class Mode(enum.StrEnum):
    """What a run trades against."""

    SIM = "sim"  # the in-process paper broker on a manual clock: no keys, no network
    PAPER = "paper"  # Alpaca paper trading, or a tradeguard paper server (--url)
    LIVE = "live"  # real money


class ViewKind(enum.StrEnum):
    """How a run shows itself."""

    AUTO = "auto"  # the live view on a terminal, plain lines otherwise
    LIVE = "live"  # the Rich live view (and progress bar in sim)
    PLAIN = "plain"  # one line per event


@dataclass(frozen=True, slots=True)
class RunSettings:
    """Everything a run is told, in one frozen object passed explicitly.

    Attributes:
        strategy: Module or file path of the strategy (``strategies.momentum``, ``bot.py:Name``).
        mode: sim, paper or live.
        bars: A bar file, ``seed:N`` for a generated day, or None: the shipped day (sim, and
            paper with `url`), Alpaca's market data (paper with keys, live).
        url: A tradeguard paper server to trade on in paper mode.
        store_url: The claim store; None is a fresh SQLite file (sim) or ``sqlite:///tradeguard.db``.
        agent_id: The agent the claims and ledger are kept under; None is the strategy's name.
        faults: A fault plan applied to the run's broker (sim and paper only).
        record: Write the run as a session file for `tradeguard replay`.
        speed: Replay a bar file on the wall clock this many times faster than real time
            (paper mode); sim runs as fast as it can.
        wait_for_open: In paper and live, wait for the market's open (`/v2/clock`) first.
        close_outside: Sim drills: ``SYMBOL@HH:MM`` closes a position behind the bot's back.
        view: auto, live or plain.
        live_confirmed: ``--i-understand-this-is-live`` was given.
        guard: The guard's settings (timeouts, reconcile interval, ...).
    """

    strategy: str | None = None
    mode: Mode = Mode.SIM
    bars: str | None = None
    url: str | None = None
    store_url: str | None = None
    agent_id: str | None = None
    faults: str | None = None
    record: str | None = None
    speed: float = 1.0
    wait_for_open: bool = True
    close_outside: tuple[str, ...] = ()
    view: ViewKind = ViewKind.AUTO
    live_confirmed: bool = False
    guard: Settings = field(default_factory=Settings)

    def __post_init__(self) -> None:
        if not self.speed > 0:
            raise ConfigError(f"speed must be positive, got {self.speed!r}")


SettingSource = str  # "default", "file tg.toml", "env TRADEGUARD_MODE", "flag --mode"

_RUN_FIELDS = tuple(f.name for f in fields(RunSettings) if f.name != "guard")
_GUARD_FIELDS = tuple(f.name for f in fields(Settings))
_GUARD_DEFAULTS = Settings()
# Fields a flag, file or variable may set, with the type a text value is converted to.
_KINDS: dict[str, type] = {
    "mode": Mode, "view": ViewKind, "speed": float, "wait_for_open": bool, "live_confirmed": bool,
    "close_outside": tuple,
}  # fmt: skip
# Fields given as a positional argument, not a flag: named so in errors and --print-config.
_ARGUMENTS = {"strategy": "argument STRATEGY"}
# Fields whose flag is not --<field> (`tradeguard.cli.run`): named as the user typed them.
_FLAG_NAMES = {
    "store_url": "--store", "wait_for_open": "--no-wait-for-open",
    "live_confirmed": "--i-understand-this-is-live",
}  # fmt: skip
# Real money is confirmed on the command line each time, never by a file or a variable.
_FLAG_ONLY = frozenset({"live_confirmed"})


def resolve_settings(
    flags: Mapping[str, Any], *, environ: Mapping[str, str] | None = None, config_path: str | None = None
) -> tuple[RunSettings, dict[str, SettingSource]]:
    """Build the run's settings from defaults, file, environment and flags (later wins).

    Args:
        flags: Field name to value, only for flags given on the command line.
        environ: The environment (default `os.environ`), read here and nowhere else.
        config_path: A TOML file; default `TRADEGUARD_CONFIG`, else none.

    Returns:
        The settings and, for every field (guard fields as ``guard.<name>``), where it came from.

    Raises:
        ConfigError: An unreadable file, an unknown key, a bad value: one line naming the source.
    """
    env = os.environ if environ is None else environ
    path = config_path or env.get(CONFIG_ENV)
    run_file, guard_file = _read_file(path) if path else ({}, {})
    sources: dict[str, SettingSource] = {}
    values: dict[str, Any] = {}
    for name, raw in run_file.items():
        values[name] = _convert(name, raw, f"{path} [run]")
        sources[name] = f"file {path}"
    for name in _RUN_FIELDS:
        variable = f"TRADEGUARD_{name.upper()}"
        if name not in _FLAG_ONLY and variable in env:
            values[name] = _convert(name, env[variable], variable)
            sources[name] = f"env {variable}"
    for name, value in flags.items():
        if not name.startswith("guard."):
            given = _ARGUMENTS.get(name) or _FLAG_NAMES.get(name, f"--{name.replace('_', '-')}")
            values[name] = _convert(name, value, given)
            sources[name] = given if name in _ARGUMENTS else f"flag {given}"
    if values.get("mode", Mode.SIM) is Mode.SIM and sources.get("store_url", "").startswith("env"):
        # See the module docstring: a sim never takes a real bot's store from the environment.
        del values["store_url"], sources["store_url"]
    guard = _guard(guard_file, env, flags, path, sources)
    settings = replace(RunSettings(guard=guard), **values)
    for name in _RUN_FIELDS:
        sources.setdefault(name, "default")
    for name in _GUARD_FIELDS:
        sources.setdefault(f"guard.{name}", "default")
    return settings, sources


def _guard(
    from_file: Mapping[str, Any],
    env: Mapping[str, str],
    flags: Mapping[str, Any],
    path: str | None,
    sources: dict[str, SettingSource],
) -> Settings:
    """Compose the guard's `Settings`: the file, then `TRADEGUARD_<FIELD>` variables, then flags."""
    checked = {name: _guard_value(name, raw, path) for name, raw in from_file.items()}
    try:
        guard = Settings(**checked)
    except TypeError as exc:
        raise ConfigError(f"{path} [guard]: {exc}") from None
    except ConfigError as exc:
        raise ConfigError(f"{exc} (file {path})") from None
    for name in from_file:
        sources[f"guard.{name}"] = f"file {path}"
    from_env = Settings.from_env(env)
    for name in _GUARD_FIELDS:
        variable = f"TRADEGUARD_{name.upper()}"
        if variable in env:
            guard = guard.with_changes(**{name: getattr(from_env, name)})
            sources[f"guard.{name}"] = f"env {variable}"
    for key, value in flags.items():
        if key.startswith("guard."):
            guard = guard.with_changes(**{key.removeprefix("guard."): value})
            sources[key] = f"flag --{key.removeprefix('guard.').replace('_', '-')}"
    return guard


def _guard_value(name: str, raw: Any, path: str | None) -> Any:
    """Check a [guard] value's TOML type: a quoted number or a table would only fail mid-run."""
    kind = type(getattr(_GUARD_DEFAULTS, name))
    if (isinstance(raw, kind) and not isinstance(raw, bool)) or (kind is float and type(raw) is int):
        return kind(raw)
    expected = {float: "a number", int: "a whole number", str: "a string"}.get(kind, kind.__name__)
    raise ConfigError(f"{path} [guard]: {name} = {raw!r} is not {expected}")


def _read_file(path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        with open(path, "rb") as handle:
            document = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: {exc}") from None
    unknown = set(document) - {"run", "guard"}
    if unknown:
        raise ConfigError(f"config file {path}: unknown table(s) {', '.join(sorted(unknown))} (run, guard)")
    run, guard = document.get("run", {}), document.get("guard", {})
    for table, got in (("run", run), ("guard", guard)):
        if not isinstance(got, dict):
            raise ConfigError(f"config file {path}: [{table}] must be a table")
    if "live_confirmed" in run:
        raise ConfigError(
            f"config file {path}: live is confirmed on the command line only (--i-understand-this-is-live)"
        )
    for table, known, got in (("run", _RUN_FIELDS, run), ("guard", _GUARD_FIELDS, guard)):
        extra = set(got) - set(known)
        if extra:
            raise ConfigError(
                f"config file {path}: unknown key(s) in [{table}]: {', '.join(sorted(extra))} "
                f"(known: {', '.join(known)})"
            )
    return dict(run), dict(guard)


def _convert(name: str, raw: Any, source: str) -> Any:
    value = _convert_value(name, raw, source)
    try:
        RunSettings(**{name: value})  # checked alone, so the error names its source
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    return value


def _convert_value(name: str, raw: Any, source: str) -> Any:
    kind = _KINDS.get(name)
    try:
        if kind is bool and isinstance(raw, str):
            lowered = raw.strip().lower()
            if lowered not in {"1", "0", "true", "false", "yes", "no"}:
                raise ValueError(raw)
            return lowered in {"1", "true", "yes"}
        if kind is tuple:
            items = raw.split(",") if isinstance(raw, str) else raw
            if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
                raise ValueError(raw)  # a file's number or table: a list of strings is expected
            return tuple(item.strip() for item in items if item.strip())
        if (kind is float and isinstance(raw, bool)) or (kind is bool and not isinstance(raw, bool)):
            raise ValueError(raw)
        if kind is not None:
            return kind(raw)
        if raw is not None and not isinstance(raw, str):
            raise ValueError(raw)
    except (ValueError, TypeError):  # TypeError: float() of a file's table or list
        expected = ", ".join(kind) if kind is not None and issubclass(kind, enum.Enum) else "a valid value"
        raise ConfigError(f"{source}: {name} = {raw!r} is not {expected}") from None
    if name == "agent_id":
        # An empty id from a file or variable must not fall back to the strategy's name in
        # silence (the store commands refuse it): it names no agent, so it is refused here.
        from tradeguard.domain.intents import check_agent_id

        try:
            check_agent_id(raw)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None
    return raw


def describe(settings: RunSettings, sources: Mapping[str, SettingSource]) -> str:
    """Return the settings in force as TOML (usable as a config file), each with its source."""
    lines = ["# tradeguard run: settings in force (flag > environment > file > default)", "[run]"]
    for name in _RUN_FIELDS:
        line = _toml_line(name, getattr(settings, name), sources.get(name, "default"))
        # A file may not confirm live (`_read_file`): shown as a comment, the output stays a config file.
        lines.append(f"# {line}" if name in _FLAG_ONLY else line)
    lines.append("")
    lines.append("[guard]")
    for name in _GUARD_FIELDS:
        source = sources.get(f"guard.{name}", "default")
        lines.append(_toml_line(name, getattr(settings.guard, name), source))
    return "\n".join(lines)


def _toml_line(name: str, value: Any, source: str) -> str:
    if value is None:
        return f"# {name} is not set{' ' * max(1, 40 - len(name) - 11)}# {source}"
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int | float):
        text = repr(value)
    elif isinstance(value, tuple):
        text = "[" + ", ".join(f'"{v}"' for v in value) + "]"
    else:
        text = '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
    entry = f"{name} = {text}"
    return f"{entry:<43} # {source}"
