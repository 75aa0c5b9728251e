"""`tradeguard keys`: a key is shown once and works, `list` never shows a secret, `revoke` stops it.

The keys guard the claim service (G1 across hosts: only an agent's own key moves its claims), so
the CLI is checked against the key ring itself, on a SQLite file and on the real PostgreSQL.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tradeguard.cli import main
from tradeguard.service.keys import KeyRing


def create(url: str, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(["keys", "create", "--store", url, *args]) == 0
    out = capsys.readouterr().out
    return out.rstrip("\n").splitlines()[-1]


def test_create_prints_a_working_key_alone_on_the_last_line(
    store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    token = create(store_url, capsys, "--agent-id", "bot-1", "--label", "momentum")
    with KeyRing(store_url) as ring:
        key = ring.verify(token)
    assert key is not None and key.agent_id == "bot-1" and not key.admin and key.label == "momentum"


def test_admin_key_is_an_admin_key(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    token = create(store_url, capsys, "--agent-id", "ops", "--admin")
    with KeyRing(store_url) as ring:
        key = ring.verify(token)
    assert key is not None and key.admin


def test_list_shows_ids_and_agents_but_never_a_secret(
    store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    token = create(store_url, capsys, "--agent-id", "bot-1")
    create(store_url, capsys, "--agent-id", "bot-2")
    assert main(["keys", "list", "--store", store_url, "--format", "json"]) == 0
    out = capsys.readouterr().out
    rows = json.loads(out)
    assert sorted(r["agent_id"] for r in rows) == ["bot-1", "bot-2"]
    secret = token.split("_", 2)[2]  # the secret itself may hold "_" (URL-safe base64)
    assert secret not in out and token not in out


def test_revoke_stops_the_key_and_list_shows_when(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    token = create(store_url, capsys, "--agent-id", "bot-1")
    key_id = token.split("_")[1]
    assert main(["keys", "revoke", key_id, "--store", store_url]) == 0
    assert f"key {key_id} of agent bot-1 revoked at " in capsys.readouterr().out
    with KeyRing(store_url) as ring:
        assert ring.verify(token) is None
    assert main(["keys", "list", "--store", store_url, "--active", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_revoking_a_revoked_key_again_says_so_and_keeps_the_first_time(
    store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    key_id = create(store_url, capsys, "--agent-id", "bot-1").split("_")[1]
    assert main(["keys", "revoke", key_id, "--store", store_url]) == 0
    first = capsys.readouterr().out.strip().rsplit(" at ", 1)[1]
    assert main(["keys", "revoke", key_id, "--store", store_url]) == 0  # idempotent
    out = capsys.readouterr().out
    assert out == f"key {key_id} of agent bot-1 was already revoked at {first}\n"


def test_revoking_an_unknown_key_is_one_line_and_exit_2(
    store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    create(store_url, capsys, "--agent-id", "bot-1")
    assert main(["keys", "revoke", "0123456789abcdef", "--store", store_url]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no API key with id '0123456789abcdef'" in err


def test_an_unusable_agent_id_is_refused_and_nothing_is_recorded(
    store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["keys", "create", "--agent-id", "two words", "--store", store_url]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "agent id 'two words' is not usable" in err
    with KeyRing(store_url) as ring:
        assert ring.list() == []


@pytest.mark.parametrize("command", [["list"], ["revoke", "0123456789abcdef"]])
def test_reading_keys_of_a_mistyped_store_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    path = tmp_path / "typo.db"
    assert main(["keys", *command, "--store", f"sqlite:///{path}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err
    assert not path.exists()
