"""docs/config-reference.md is generated from the schema and must be current."""

from __future__ import annotations

import re
from pathlib import Path

from gateway.cli import main
from gateway.config import _ALL_FIELD_PATHS
from gateway.config_reference import COMMAND, render

COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "config-reference.md"


def test_committed_reference_is_current() -> None:
    assert COMMITTED.read_text(encoding="utf-8") == render(), (
        f"docs/config-reference.md is stale: run `{COMMAND}` and commit it"
    )


def test_every_key_is_documented_with_its_full_path() -> None:
    text = render()
    documented = {
        re.sub(r"\[\]|\.NAME", "", key)
        for key in re.findall(r"^(?:\| |#+ )`([^`]+)`", text, flags=re.MULTILINE)
    }
    paths = {p for ps in _ALL_FIELD_PATHS.values() for p in ps}
    assert len(paths) > 50
    # A profile is written like the agent section: documented once, by reference.
    assert "Each takes the keys of [`agent`](#agent)." in text
    missing = {p for p in paths if p not in documented and not p.startswith("profiles.")}
    assert not missing


def test_cli_writes_the_reference(tmp_path: Path) -> None:
    out = tmp_path / "ref.md"
    assert main(["config-reference", "--output", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == render()
