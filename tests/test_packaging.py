"""The wheel installs `tradeguard` and nothing else at the top level.

A top-level `strategies` (or `replay`) in the wheel would shadow, or be shadowed by, a bot's own
package of that name. This asks setuptools' own package discovery, with the project's
`[tool.setuptools.packages.find]` settings, which packages a build puts in the wheel.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def discovered_packages() -> list[str]:
    expand = pytest.importorskip("setuptools.config.expand", reason="setuptools does the discovery")
    with (ROOT / "pyproject.toml").open("rb") as fh:
        find = tomllib.load(fh)["tool"]["setuptools"]["packages"]["find"]
    # The call setuptools makes when it expands `packages = {find = ...}` for a build.
    packages: list[str] = expand.find_packages(root_dir=ROOT, **find)
    return packages


def test_the_only_top_level_import_name_is_tradeguard() -> None:
    packages = discovered_packages()
    assert {name.split(".")[0] for name in packages} == {"tradeguard"}


def test_the_wheel_still_holds_every_tradeguard_package() -> None:
    on_disk = {
        ".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "tradeguard").rglob("__init__.py")
    }
    assert on_disk <= set(discovered_packages())


def test_the_wheel_holds_the_day_of_bars_tradeguard_run_uses_without_bars() -> None:
    import fnmatch

    from tradeguard.run.barfile import shipped_day_path

    with (ROOT / "pyproject.toml").open("rb") as fh:
        patterns = tomllib.load(fh)["tool"]["setuptools"]["package-data"]["tradeguard"]
    shipped = shipped_day_path().relative_to(ROOT / "tradeguard").as_posix()
    assert any(fnmatch.fnmatch(shipped, pattern) for pattern in patterns), patterns
    assert shipped_day_path().stat().st_size < 200_000  # small enough to ship
