"""docs/config-reference.md is generated from the schema and must be current."""

from __future__ import annotations

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
    paths = {p for ps in _ALL_FIELD_PATHS.values() for p in ps}
    assert len(paths) > 40
    for path in paths:
        # A key is a table row; a section or sub-section is a heading.
        assert f"| `{path}` |" in text or f"# `{path}`" in text, path


def test_cli_writes_the_reference(tmp_path: Path) -> None:
    out = tmp_path / "ref.md"
    assert main(["config-reference", "--output", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == render()
