"""The import graph keeps its layers and its light entry points.

Static checks read every module's imports with `ast` (nothing is imported, nothing is timed):
the domain layer imports no adapter, store, service or third-party I/O library, and only the
adapter packages and the drop-in client import alpaca-py. Subprocess checks run the command line
the way a user does and look at what it loaded: `tradeguard --help` and `tradeguard audit` must
not pay for alpaca-py or pandas.

The adapter packages are named by prefix, so the checks hold before and after the paper broker
and the fault plans move out of `tradeguard.broker` into `tradeguard.paper` / `tradeguard.faults`.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import tradeguard
from tradeguard import ClaimStore, OrderGateway, PaperBroker

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIR = ROOT / "tradeguard"

ADAPTERS = ("tradeguard.broker", "tradeguard.paper", "tradeguard.faults")
DROP_IN = "tradeguard.client"  # subclasses alpaca-py's TradingClient: an adapter by nature
DOMAIN = (
    "tradeguard.domain",
    "tradeguard.errors",
    "tradeguard.clock",
    "tradeguard.config",
    "tradeguard.ports",
)
NOT_FOR_THE_DOMAIN = (
    *ADAPTERS,
    "tradeguard.store",
    "tradeguard.cli",
    "tradeguard.service",
    DROP_IN,
    "tradeguard.gateway",
    "alpaca",
    "sqlalchemy",
    "requests",
    "pandas",
)
HEAVY = ("alpaca", "pandas")  # what the light entry points must not load
# ... nor, on a store at the schema's head, Alembic (the CLI wrapper below checks it too): only a
# store to upgrade needs it, and reading the migrations cost most of a store's opening.


@dataclass(frozen=True, slots=True)
class Import:
    """One import statement's target, as seen from the module that holds it."""

    target: str
    line: int
    at_import_time: bool  # False inside a function or an `if TYPE_CHECKING:` block


def within(name: str, prefixes: Iterable[str]) -> bool:
    """True when `name` is one of `prefixes` or a submodule (or attribute) of one."""
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def module_files() -> dict[str, Path]:
    """Every module of the package by dotted name (`tradeguard.store`, `tradeguard.store.claims`)."""
    found = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> Iterator[str]:
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    base = node.module or ""
    if node.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join([*package, base] if base else package)
    yield base
    for alias in node.names:
        # `from tradeguard import store` imports a module; `from tradeguard import ClaimStore`
        # imports the module that `tradeguard` resolves that name from (lazily, but it does).
        if base == "tradeguard" and alias.name in tradeguard._EXPORTS:
            yield tradeguard._EXPORTS[alias.name]
        else:
            yield f"{base}.{alias.name}"


def imports_of(module: str, path: Path) -> list[Import]:
    """Every import in the module, marking those that run when the module is imported."""
    is_package = path.name == "__init__.py"
    found: list[Import] = []

    def walk(node: ast.AST, at_import_time: bool) -> None:
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.extend(Import(t, node.lineno, at_import_time) for t in _targets(node, module, is_package))
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            for child in ast.iter_child_nodes(node):
                walk(child, False)
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                walk(child, False)
            for child in node.orelse:
                walk(child, at_import_time)
        else:
            for child in ast.iter_child_nodes(node):
                walk(child, at_import_time)

    walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)), True)
    return found


GRAPH = {name: imports_of(name, path) for name, path in module_files().items()}
CLI_MODULES = [name for name in GRAPH if within(name, ["tradeguard.cli"])]  # one module a command


def test_the_graph_sees_the_package_and_its_imports() -> None:
    # Guards the checks below against passing because they looked at nothing.
    assert {"tradeguard", "tradeguard.domain.orders", "tradeguard.cli", "tradeguard.client"} <= set(GRAPH)
    assert any(within(i.target, ["alpaca"]) and i.at_import_time for i in GRAPH[f"{DROP_IN}.guarded"])
    lazy = [i for m in CLI_MODULES for i in GRAPH[m] if within(i.target, ["tradeguard.store"])]
    assert lazy and not any(i.at_import_time for i in lazy)


def test_the_domain_layer_imports_no_adapter_store_service_or_io_library() -> None:
    offending = [
        f"{module}:{imp.line} imports {imp.target}"
        for module, imports in GRAPH.items()
        if within(module, DOMAIN)
        for imp in imports
        if within(imp.target, NOT_FOR_THE_DOMAIN)
    ]
    assert offending == []


def test_only_the_adapters_import_alpaca_when_they_are_imported() -> None:
    # A function-level import (the test kit's `alpaca_client`) loads alpaca-py only when that
    # function runs, which is the point: importing the module stays free of it.
    offending = [
        f"{module}:{imp.line} imports {imp.target}"
        for module, imports in GRAPH.items()
        if not within(module, (*ADAPTERS, DROP_IN))
        for imp in imports
        if imp.at_import_time and within(imp.target, ["alpaca"])
    ]
    assert offending == []


def _import_time_closure(start: str) -> set[str]:
    """The package's modules (and third-party roots) loaded by importing `start`, statically."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        name = todo.pop()
        # Importing a.b.c runs a/__init__ and a/b/__init__ first.
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            prefix = ".".join(parts[:i])
            if prefix in seen:
                continue
            seen.add(prefix)
            todo.extend(imp.target for imp in GRAPH.get(prefix, []) if imp.at_import_time)
    return seen


@pytest.mark.parametrize("module", ["tradeguard", "tradeguard.testing", *CLI_MODULES])
def test_importing_the_light_modules_loads_neither_alpaca_nor_pandas(module: str) -> None:
    assert sorted(m for m in _import_time_closure(module) if within(m, HEAVY)) == []


def test_the_lazy_names_match_what_type_checkers_see() -> None:
    tree = ast.parse((PACKAGE_DIR / "__init__.py").read_text(encoding="utf-8"))
    blocks = [n for n in tree.body if isinstance(n, ast.If) and _is_type_checking(n.test)]
    declared = {
        alias.asname or alias.name: node.module
        for block in blocks
        for node in block.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert declared == tradeguard._EXPORTS
    assert set(declared) == set(tradeguard.__all__) - {"__version__"}


# Runs the command's `main` as the console script does, then reports what it loaded.
CLI_WRAPPER = """
import json, sys
from tradeguard.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"alpaca", "pandas", "alembic"})
print("\\n" + json.dumps({"code": code, "heavy": heavy}))
"""


def run_cli(args: list[str], cwd: Path) -> tuple[str, dict[str, object]]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-c", CLI_WRAPPER, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out, _, report = done.stdout.rstrip().rpartition("\n")
    return out, json.loads(report)


@pytest.fixture
def audited_store(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'claims.db'}"
    with ClaimStore(url) as store:
        OrderGateway(PaperBroker(), store, agent_id="bot", reconcile_on_start=False).enter(
            "TQQQ", qty=6, intent="09:42 buy"
        )
    return url


def test_help_loads_neither_alpaca_nor_pandas(tmp_path: Path) -> None:
    out, report = run_cli(["--help"], tmp_path)
    assert report == {"code": 0, "heavy": []}
    assert "Usage: tradeguard" in out


def test_audit_loads_neither_alpaca_nor_pandas_nor_alembic(tmp_path: Path, audited_store: str) -> None:
    out, report = run_cli(["audit", "--store", audited_store], tmp_path)
    assert report == {"code": 0, "heavy": []}
    assert "TQQQ" in out
    out, report = run_cli(["audit", "--store", audited_store, "--csv", str(tmp_path / "a.csv")], tmp_path)
    assert report == {"code": 0, "heavy": []}
    assert "audit record(s)" in out


def test_the_module_entry_point_help_loads_neither_alpaca_nor_pandas(tmp_path: Path) -> None:
    # `python -X importtime` names every module the real entry point imports, on stderr.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "tradeguard.cli", "--help"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    loaded = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if "|" in line}
    assert "tradeguard.config" in loaded  # the CLI itself runs as __main__
    assert sorted(m for m in loaded if within(m, HEAVY)) == []


PUBLIC_SURFACE = ("tradeguard", "tradeguard.testing")


def example_files() -> dict[str, Path]:
    """The repository's example bots, and the demo that `tradeguard demo` runs."""
    found = {f"strategies.{p.stem}": p for p in sorted((ROOT / "strategies").glob("*.py"))}
    found["tradeguard.demo"] = PACKAGE_DIR / "demo.py"
    return found


def test_the_examples_and_the_demo_use_only_the_public_surface() -> None:
    offending = []
    for module, path in example_files().items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            offending += [
                f"{module}:{node.lineno} imports {name}"
                for name in names
                if within(name, ["tradeguard"]) and name not in PUBLIC_SURFACE
            ]
    assert offending == []


REPLAY_DIR = ROOT / "replay"
REPLAY_USERS = ("tradeguard.cli", "tradeguard.demo")  # commands that run it (the cli package); lazily


def test_tradeguard_imports_replay_only_from_its_commands_and_only_when_they_run() -> None:
    offending = [
        f"{module}:{imp.line} imports {imp.target}"
        for module, imports in GRAPH.items()
        for imp in imports
        if within(imp.target, ["replay"]) and (imp.at_import_time or not within(module, REPLAY_USERS))
    ]
    assert offending == []
    assert any(within(i.target, ["replay"]) for m in CLI_MODULES for i in GRAPH[m])  # the check sees them


def test_replay_uses_only_the_public_surface_of_tradeguard() -> None:
    offending = []
    for path in sorted(REPLAY_DIR.rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        offending += [
            f"{module}:{imp.line} imports {imp.target}"
            for imp in imports_of(module, path)
            if within(imp.target, ["tradeguard"])
            and imp.target not in PUBLIC_SURFACE
            and imp.target.rpartition(".")[0] not in PUBLIC_SURFACE  # a name of a public module
            and imp.target not in tradeguard._EXPORTS.values()  # `from tradeguard import X`, resolved
        ]
    assert offending == []
