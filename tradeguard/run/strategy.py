"""The strategy interface: one file, one `Strategy` subclass, decisions through the gateway.

A strategy names the symbols it wants bars of and decides on each minute's bars; every order
goes through `ctx.gateway` (or a `GuardedTradingClient` from `ctx.trading_client()`), named by
the bar's time and the reason, so a retry of the same bar is the same decision::

    from tradeguard import Bars, Strategy, StrategyContext

    class Breakout(Strategy):
        symbols = ("QQQ", "TQQQ")

        def on_bar(self, bars: Bars, ctx: StrategyContext) -> None:
            if bars.close("QQQ") > self.high and ctx.gateway.position("TQQQ").is_flat:
                ctx.gateway.enter("TQQQ", qty=6, intent=f"{bars.local:%Y-%m-%d %H:%M} breakout")

`tradeguard run path/to/breakout.py` (or `tradeguard run my_bots.breakout`) finds the module's
one Strategy subclass (`module:Name` picks one when there are several) and runs it.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, ClassVar

from tradeguard.clock import Clock
from tradeguard.errors import ConfigError

if TYPE_CHECKING:
    from tradeguard.client import GuardedTradingClient
    from tradeguard.gateway import OrderGateway
    from tradeguard.run.bars import Bars

__all__ = ["Strategy", "StrategyContext", "load_strategy"]


@dataclass(frozen=True, slots=True)
class StrategyContext:
    """What a running strategy may use.

    Attributes:
        gateway: The guard: `enter`, `exit`, `position`. Every order goes through it.
        clock: The run's clock (manual in `sim`, the wall clock otherwise); wait with
            `clock.sleep`, never `time.sleep`, so a simulated day runs in seconds and a stop
            (Ctrl-C) ends the wait at once.
        mode: "sim", "paper" or "live".
        agent_id: The name the guard keeps this strategy's claims and ledger under.
    """

    gateway: OrderGateway
    clock: Clock
    mode: str
    agent_id: str
    _client: Callable[[], GuardedTradingClient] = field(repr=False)
    _log: Callable[[str], None] = field(repr=False)

    def trading_client(self) -> GuardedTradingClient:
        """Return an alpaca-py `TradingClient` whose orders go through this run's gateway.

        For bots written against alpaca-py: the same account, store, agent and clock as the
        gateway. Its other calls (`get_account`, ...) are alpaca-py's own against the run's
        account (in `sim`, the paper account served on 127.0.0.1).
        """
        return self._client()

    def log(self, message: str) -> None:
        """Show a line in the run's view (and its plain output)."""
        self._log(message)


class Strategy:
    """Base class of a strategy `tradeguard run` can run. Subclass it in one file.

    Attributes:
        name: Default agent id of the strategy's claims (the class name, lower case, if unset).
        symbols: The symbols whose bars `on_bar` receives.
    """

    name: ClassVar[str] = ""
    symbols: ClassVar[tuple[str, ...]] = ()

    def on_start(self, ctx: StrategyContext) -> None:
        """Prepare before the first bar (the start-up reconcile pass has run). Optional."""

    def on_bar(self, bars: Bars, ctx: StrategyContext) -> None:
        """Decide on one minute of bars and act through `ctx.gateway`."""
        raise NotImplementedError(f"{type(self).__name__} must define on_bar")

    def on_stop(self, ctx: StrategyContext) -> None:
        """Tidy up after the last bar or a stop signal; orders are still allowed. Optional."""

    @classmethod
    def agent_name(cls) -> str:
        """Return the default agent id: `name`, or the class name in lower case."""
        return cls.name or cls.__name__.lower()


# The module name a strategy file is imported under (no other process can import it by it).
_FILE_MODULE_PREFIX = "tradeguard_strategy_"


def load_strategy(spec: str) -> type[Strategy]:
    """Import a strategy by module path or file path, optionally with ``:ClassName``.

    ``strategies.momentum``, ``bots/breakout.py`` and ``bots/breakout.py:Breakout`` all work. A
    module path is imported with the current directory first on `sys.path`, as ``python -m``
    would. Without a class name the module must define exactly one `Strategy` subclass.

    Raises:
        ConfigError: The module does not import, or holds no (or several) strategies; one line.
    """
    target, _, class_name = spec.partition(":")
    if target.endswith(".py") or os.sep in target or "/" in target:
        module = _import_file(target)
    else:
        module = _import_module(target)
    if class_name:
        found = getattr(module, class_name, None)
        if not (inspect.isclass(found) and issubclass(found, Strategy)):
            raise ConfigError(f"strategy {spec}: {module.__name__} has no Strategy subclass {class_name}")
        return found
    own = [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj)
        and issubclass(obj, Strategy)
        and obj is not Strategy
        and obj.__module__ == module.__name__
    ]
    if len(own) != 1:
        names = ", ".join(sorted(c.__name__ for c in own)) or "none"
        raise ConfigError(
            f"strategy {spec}: expected one Strategy subclass in {module.__name__}, found {names} "
            f"(name one: {target}:ClassName)"
        )
    return own[0]


def strategy_spec(cls: type[Strategy]) -> str:
    """Return the spec by which `load_strategy` in another process loads `cls`.

    A class from a module imported by name is named by module and class. A class from a file
    (`load_strategy("bots/x.py")`, or a script run as ``__main__``) lives in a module no other
    process can import by that name: it is named by the file's absolute path, so a worker started
    in any folder finds it.
    """
    module = sys.modules.get(cls.__module__)
    path = getattr(module, "__file__", None)
    if path and (cls.__module__ == "__main__" or cls.__module__.startswith(_FILE_MODULE_PREFIX)):
        return f"{os.path.abspath(path)}:{cls.__qualname__}"
    return f"{cls.__module__}:{cls.__qualname__}"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _import_module(name: str) -> ModuleType:
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(name)
    except Exception as exc:  # a strategy's import can fail any way; the run must say so in one line
        raise ConfigError(f"strategy {name} does not import: {_one_line(exc)}") from exc


def _import_file(path: str) -> ModuleType:
    if not os.path.isfile(path):
        why = "is a folder, not a file" if os.path.isdir(path) else "does not exist"
        raise ConfigError(f"strategy file {path} {why}")
    stem = os.path.splitext(os.path.basename(path))[0]
    name = f"{_FILE_MODULE_PREFIX}{stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"strategy file {path} is not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look classes up by module name
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise ConfigError(f"strategy {path} does not import: {_one_line(exc)}") from exc
    return module
