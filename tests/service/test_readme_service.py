"""The README's curl examples of the claim service run against the real service and print what
the README says they print (`...` stands for a token or a time)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.service.conftest import NewKey, Service

ROOT = Path(__file__).resolve().parents[2]


def _examples() -> list[tuple[str, str | None]]:
    """Return (command, expected output or None) for each curl command in the section's sh blocks."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## The claim service\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for block in re.findall(r"```sh\n(.*?)```", section, re.S) for line in block.splitlines()]
    examples: list[tuple[str, str | None]] = []
    command = ""
    for line in lines:
        if command or line.startswith("curl "):
            command += line.rstrip("\\").strip() + " "
            if not line.endswith("\\"):
                examples.append((command.strip(), None))
                command = ""
        elif line.startswith("# ") and examples and examples[-1][1] is None:
            examples[-1] = (examples[-1][0], line[2:])
    return examples


def _matches(expected: str, output: str) -> bool:
    return re.fullmatch(re.escape(expected).replace(re.escape("..."), ".+?"), output) is not None


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_the_readme_curl_examples_answer_as_shown(service: Service, new_key: NewKey) -> None:
    examples = _examples()
    assert len(examples) == 7 and all(expected for _, expected in examples)
    env = {
        **os.environ,
        "TG_URL": service.base_url,
        "TG_KEY": new_key("my-bot"),
        "TG_ADMIN_KEY": new_key("ops", admin=True),
    }
    for command, expected in examples:
        done = subprocess.run(["bash", "-c", command], env=env, capture_output=True, text=True, check=False)
        assert done.returncode == 0, (command, done.stderr)
        assert expected is not None and _matches(expected, done.stdout), (command, done.stdout)
        if '"PROCEED"' in done.stdout:
            env["TOKEN"] = json.loads(done.stdout)["settlement_token"]
