"""The wheel installs `tradeguard` and `replay`, and nothing else at the top level.

`replay` ships because `tradeguard replay`, `tradeguard import` and `tradeguard demo` need it
once installed; a top-level `strategies` would shadow, or be shadowed by, a bot's own package of
that name. The first tests ask setuptools' own package discovery, with the project's
`[tool.setuptools.packages.find]` settings, which packages a build puts in the wheel; the last
builds the wheel and runs `tradeguard replay` from it on the session it ships.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
import zipfile
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


def test_the_top_level_import_names_are_tradeguard_and_replay() -> None:
    packages = discovered_packages()
    assert {name.split(".")[0] for name in packages} == {"tradeguard", "replay"}


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


def test_the_wheel_still_holds_every_replay_package() -> None:
    on_disk = {
        ".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "replay").rglob("__init__.py")
    }
    assert on_disk <= set(discovered_packages())


@pytest.mark.slow
def test_a_built_wheel_runs_tradeguard_replay_on_the_may21_session_it_ships(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(dist), str(ROOT)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    (wheel,) = dist.glob("tradeguard-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        archive.extractall(tmp_path / "site")
    assert "replay/sessions/2026-05-21-tqqq-sqqq.jsonl" in names
    assert {n.split("/")[0] for n in names} == {
        "tradeguard",
        "replay",
        wheel.name.split("-py3")[0] + ".dist-info",
    }
    # Only the unpacked wheel on the path (ahead of any editable install), run from an empty folder.
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    code = (
        "import json, sys, replay, tradeguard\n"
        "from tradeguard.cli import main\n"
        "print(json.dumps([replay.__file__, tradeguard.__file__]))\n"
        "sys.exit(main(['replay', '2026-05-21-tqqq-sqqq.jsonl', '--compare', '--json']))\n"
    )
    (tmp_path / "empty").mkdir()
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path / "empty", env=env, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    where, _, doc = done.stdout.partition("\n")
    assert all(path.startswith(str(tmp_path / "site")) for path in json.loads(where))
    figures = json.loads(doc)
    assert figures["full"]["duplicate_attempts_blocked"] == 7
    assert figures["entry-only"]["unintended_short_shares"] == -12
