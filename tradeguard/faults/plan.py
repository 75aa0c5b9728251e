"""Fault plans: scripted broker failures, applied in process (`FaultyBroker`) and by the paper server.

A plan is YAML or JSON::

    seed: 7
    faults:
      - route: POST /v2/orders            # method and path (placeholders like {symbol} allowed)
        match: {symbol: TQQQ, side: sell}  # optional: fields of the order, query or path
        nth: 1                            # which matching call, 1-based (or a list); omit for all
        probability: 0.5                  # optional: fire at random, reproducibly from the seed
        action: accept_then_timeout
        delay_secs: 30

Each fault counts the calls that match its route and `match` on its own; the first fault in plan
order that fires decides the call. Randomness comes from one generator per fault seeded from the
plan's seed, so a plan replays the same way for the same sequence of calls. A `route` must name
one of the routes in `tradeguard.paper.routes` (the routes the paper server serves), and `match`
only fields of that route.
"""

from __future__ import annotations

import enum
import json
import os
import random
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any

import yaml

from tradeguard.errors import ConfigError
from tradeguard.paper.routes import ROUTES, route_for, segments_match, split_route

__all__ = ["Fault", "FaultAction", "FaultInjector", "FaultPlan", "FiredFault"]

Scalar = str | int | float | bool


class FaultAction(enum.StrEnum):
    """What a fault does to the call it hits."""

    ACCEPT_THEN_TIMEOUT = "accept_then_timeout"  # processed; the answer never comes in time
    ACCEPT_THEN_ERROR = "accept_then_error"  # processed; answered with an error status
    REJECT = "reject"  # not processed; answered with a 4xx
    ERROR = "error"  # not processed; answered with a 5xx
    DELAY = "delay"  # processed and answered normally, late
    DROP = "drop"  # connection closed before processing
    RATE_LIMIT = "rate_limit"  # not processed; 429 "rate limit exceeded"

    @property
    def processes(self) -> bool:
        """True when the broker acts on the call (the order is placed)."""
        return self in {FaultAction.ACCEPT_THEN_TIMEOUT, FaultAction.ACCEPT_THEN_ERROR, FaultAction.DELAY}


_GATEWAY_TIMEOUT_PAGE = (
    "<html><body><h1>504 Gateway Time-out</h1>\nThe server didn't respond in time.\n</body></html>\n"
)
_DEFAULT_STATUS = {FaultAction.ACCEPT_THEN_ERROR: 504, FaultAction.REJECT: 403, FaultAction.ERROR: 500}
_DEFAULT_BODY: dict[FaultAction, str | dict[str, Any]] = {
    FaultAction.ACCEPT_THEN_ERROR: _GATEWAY_TIMEOUT_PAGE,
    FaultAction.REJECT: {"code": 40310000, "message": "request rejected by fault plan"},
    FaultAction.ERROR: "",  # Alpaca's 5xx answers are empty or an HTML page
}
_STATUS_RANGE = {
    FaultAction.ACCEPT_THEN_ERROR: (400, 599),
    FaultAction.REJECT: (400, 499),
    FaultAction.ERROR: (500, 599),
}
_DEFAULT_DELAY = {FaultAction.ACCEPT_THEN_TIMEOUT: 30.0, FaultAction.DELAY: 1.0}
_KEYS = ("route", "action", "match", "nth", "probability", "delay_secs", "status", "body")


class _FieldError(ConfigError):
    """A bad value of one key of a fault; the loader turns `key` into a line number."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def _number(key: str, value: object, low: float, high: float, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise _FieldError(key, f"{key} must be {what}, got {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True)
class Fault:
    """One scripted failure. Unset `delay_secs`, `status` and `body` take the action's defaults.

    Raises:
        ConfigError: On an unknown route or action, a `match` field the route lacks, or a key
            that does not apply to the action.
    """

    route: str
    action: FaultAction
    match: Mapping[str, Scalar] = field(default_factory=dict)
    nth: int | Sequence[int] | None = None
    probability: float | None = None
    delay_secs: float | None = None
    status: int | None = None
    body: str | Mapping[str, Any] | list[Any] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.route, str):
            raise _FieldError("route", f"route must be text like 'POST /v2/orders', got {self.route!r}")
        served = route_for(self.route)
        if served is None:
            expected = ", ".join(r.key for r in ROUTES)
            raise _FieldError("route", f"unknown route {self.route!r} (expected one of {expected})")
        method, segments = split_route(self.route)
        object.__setattr__(self, "route", f"{method} /{'/'.join(segments)}")
        try:
            object.__setattr__(self, "action", FaultAction(str(self.action)))
        except ValueError:
            expected = ", ".join(a.value for a in FaultAction)
            raise _FieldError(
                "action", f"unknown action {self.action!r} (expected one of {expected})"
            ) from None
        if not isinstance(self.match, Mapping):
            raise _FieldError("match", f"match must be a mapping of field to value, got {self.match!r}")
        for key, value in self.match.items():
            if key not in served.fields:
                expected = ", ".join(sorted(served.fields)) or "nothing"
                raise _FieldError(
                    "match", f"match field {key!r} does not apply to {served.key} (expected {expected})"
                )
            if not isinstance(value, Scalar):
                raise _FieldError("match", f"match value of {key!r} must be a scalar, got {value!r}")
        object.__setattr__(self, "match", MappingProxyType(dict(self.match)))
        self._check_nth()
        if self.probability is not None:
            _number("probability", self.probability, 0.0, 1.0, "a number from 0 to 1")
        self._check_applies("delay_secs", self.delay_secs, _DEFAULT_DELAY)
        if self.delay_secs is not None:
            _number("delay_secs", self.delay_secs, 0.0, 86_400.0, "seconds from 0 to 86400")
        self._check_applies("status", self.status, _STATUS_RANGE)
        if self.status is not None:
            low, high = _STATUS_RANGE[self.action]
            if (
                isinstance(self.status, bool)
                or not isinstance(self.status, int)
                or not low <= self.status <= high
            ):
                raise _FieldError(
                    "status", f"status of {self.action} must be {low}-{high}, got {self.status!r}"
                )
        self._check_applies("body", self.body, _DEFAULT_BODY)
        if self.body is not None and not isinstance(self.body, str | Mapping | list):
            raise _FieldError("body", f"body must be text or JSON (a mapping or list), got {self.body!r}")

    def _check_nth(self) -> None:
        nth: object = self.nth
        values = nth if isinstance(nth, list | tuple) else () if nth is None else (nth,)
        if nth is not None and (
            not values or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in values)
        ):
            raise _FieldError("nth", f"nth must be a call number from 1 (or a list of them), got {nth!r}")
        if isinstance(nth, list):
            object.__setattr__(self, "nth", tuple(nth))

    def hits(self, count: int) -> bool:
        """Return whether the `count`-th matching call is one `nth` selects."""
        if self.nth is None:
            return True
        return count == self.nth if isinstance(self.nth, int) else count in self.nth

    def _check_applies(self, key: str, value: object, actions: Mapping[FaultAction, object]) -> None:
        if value is not None and self.action not in actions:
            users = ", ".join(sorted(a.value for a in actions))
            raise _FieldError(key, f"{key} does not apply to action {self.action} (only to {users})")

    @property
    def effective_delay_secs(self) -> float:
        """Seconds this fault waits (0 for actions that do not wait)."""
        return self.delay_secs if self.delay_secs is not None else _DEFAULT_DELAY.get(self.action, 0.0)

    @property
    def effective_status(self) -> int:
        """HTTP status this fault answers with (429 for rate_limit, 0 when it sends none)."""
        if self.action is FaultAction.RATE_LIMIT:
            return 429
        return self.status if self.status is not None else _DEFAULT_STATUS.get(self.action, 0)

    @property
    def effective_body(self) -> str | Mapping[str, Any] | list[Any]:
        """Body this fault answers with: text, or a JSON document."""
        if self.action is FaultAction.RATE_LIMIT:
            return "rate limit exceeded"
        return self.body if self.body is not None else _DEFAULT_BODY.get(self.action, "")

    def wants(self, method: str, path: str, fields: Mapping[str, object]) -> bool:
        """Return whether a call to `method path` with `fields` is one this fault counts."""
        f_method, f_path = split_route(self.route)
        if method.upper() != f_method or not segments_match(f_path, tuple(path.strip("/").split("/"))):
            return False
        match = self.match
        return not match or all(_same(expected, fields.get(key)) for key, expected in match.items())


def _same(expected: Scalar, actual: object) -> bool:
    if actual is None:
        return False
    if isinstance(expected, bool) or isinstance(actual, bool):
        return str(expected).lower() == str(actual).lower()
    try:
        # alpaca-py sends qty as a float (10.0) while a plan says 10: compare numbers as numbers.
        return Decimal(str(expected)) == Decimal(str(actual))
    except InvalidOperation:
        return str(expected).casefold() == str(actual).casefold()


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """A seed and the faults to inject, in priority order."""

    faults: tuple[Fault, ...] = ()
    seed: int = 0

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> FaultPlan:
        """Read a YAML or JSON plan file.

        Raises:
            ConfigError: "plan.yaml:5: unknown action 'foo' (expected one of ...)".
        """
        name = os.fspath(path)
        try:
            with open(name, encoding="utf-8") as handle:
                text = handle.read()
        except OSError as exc:
            raise ConfigError(f"{name}: cannot read fault plan: {exc.strerror or exc}") from exc
        return cls.parse(text, source=name)

    @classmethod
    def parse(cls, text: str, source: str = "<plan>") -> FaultPlan:
        """Parse plan text (YAML, or JSON which is YAML too); errors name `source` and the line."""
        loader: yaml.SafeLoader | None = None
        try:
            loader = yaml.SafeLoader(text)  # its reader already refuses control characters
            return _PlanReader(loader, source).plan(loader.get_single_node())
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark is not None else 1
            raise ConfigError(f"{source}:{line}: {exc.problem or exc.context}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{source}: {exc}") from None
        finally:
            if loader is not None:
                loader.dispose()

    def as_text(self) -> str:
        """Return the plan as JSON text that `parse` reads back into an equal plan."""
        faults = []
        for fault in self.faults:
            entry: dict[str, Any] = {"route": fault.route, "action": fault.action.value}
            if fault.match:
                entry["match"] = dict(fault.match)
            nth = fault.nth
            if nth is not None:
                entry["nth"] = nth if isinstance(nth, int) else list(nth)
            for name in ("probability", "delay_secs", "status", "body"):
                if getattr(fault, name) is not None:
                    entry[name] = getattr(fault, name)
            faults.append(entry)
        return json.dumps({"seed": self.seed, "faults": faults})

    def injector(self) -> FaultInjector:
        """Return a fresh injector (call counters at zero) for this plan."""
        return FaultInjector(self)


class _PlanReader:
    """Builds a plan from YAML nodes, so each error can name its line."""

    def __init__(self, loader: yaml.SafeLoader, source: str) -> None:
        self._loader = loader
        self._source = source

    def _fail(self, node: yaml.Node | None, message: str) -> ConfigError:
        line = node.start_mark.line + 1 if node is not None else 1
        return ConfigError(f"{self._source}:{line}: {message}")

    def _mapping(self, node: yaml.Node, what: str) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        if not isinstance(node, yaml.MappingNode):
            raise self._fail(node, f"{what} must be a mapping")
        entries: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            key = self._loader.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise self._fail(key_node, f"key {key!r} of {what} is not a name")
            if key in entries:
                raise self._fail(key_node, f"duplicate key {key!r}")
            entries[key] = (key_node, value_node)
        return entries

    def plan(self, root: yaml.Node | None) -> FaultPlan:
        if root is None:
            return FaultPlan()
        entries = self._mapping(root, "a fault plan")
        for key, (key_node, _) in entries.items():
            if key not in {"seed", "faults"}:
                raise self._fail(key_node, f"unknown key {key!r} (expected one of seed, faults)")
        seed = 0
        if "seed" in entries:
            seed_node = entries["seed"][1]
            seed = self._loader.construct_object(seed_node, deep=True)
            if isinstance(seed, bool) or not isinstance(seed, int):
                raise self._fail(seed_node, f"seed must be an integer, got {seed!r}")
        faults: list[Fault] = []
        if "faults" in entries:
            seq = entries["faults"][1]
            if not isinstance(seq, yaml.SequenceNode):
                raise self._fail(seq, "faults must be a list")
            faults = [self._fault(item) for item in seq.value]
        return FaultPlan(faults=tuple(faults), seed=seed)

    def _fault(self, node: yaml.Node) -> Fault:
        entries = self._mapping(node, "a fault")
        values: dict[str, Any] = {}
        for key, (key_node, value_node) in entries.items():
            if key not in _KEYS:
                raise self._fail(key_node, f"unknown key {key!r} (expected one of {', '.join(_KEYS)})")
            values[key] = self._loader.construct_object(value_node, deep=True)
        for required in ("route", "action"):
            if required not in values:
                raise self._fail(node, f"a fault needs {required!r}")
        try:
            return Fault(**values)
        except _FieldError as exc:
            raise self._fail(entries[exc.key][1] if exc.key in entries else node, str(exc)) from None


@dataclass(frozen=True, slots=True)
class FiredFault:
    """A record that `fault` hit a call to `method path`."""

    method: str
    path: str
    fault: Fault


class FaultInjector:
    """The live side of a plan: counts matching calls and decides which fault fires. Thread-safe."""

    def __init__(self, plan: FaultPlan) -> None:
        self.plan = plan
        self._counts = [0] * len(plan.faults)
        # One generator per fault, so adding a fault does not reshuffle the others' draws.
        # Seeding one from a string is a SHA-512: only faults with a probability ever draw.
        self._rngs = [
            random.Random(f"{plan.seed}/{i}") if fault.probability is not None else None
            for i, fault in enumerate(plan.faults)
        ]
        self._fired: list[FiredFault] = []
        self._lock = threading.Lock()

    def check(self, method: str, path: str, fields: Mapping[str, object]) -> Fault | None:
        """Count this call against every fault; return the first that fires, or None."""
        chosen: Fault | None = None
        with self._lock:
            for i, fault in enumerate(self.plan.faults):
                if not fault.wants(method, path, fields):
                    continue
                self._counts[i] += 1
                hit = fault.hits(self._counts[i])
                rng = self._rngs[i]
                if hit and rng is not None and fault.probability is not None:
                    hit = rng.random() < fault.probability
                if hit and chosen is None:
                    chosen = fault
            if chosen is not None:
                self._fired.append(FiredFault(method.upper(), path, chosen))
        return chosen

    def fired(self) -> list[FiredFault]:
        """Return every fault that fired so far, in order."""
        with self._lock:
            return list(self._fired)
