"""The files a gateway keeps of its calls in ``records.calls_dir``."""

from __future__ import annotations

from pathlib import Path


def record_files(directory: Path) -> list[Path]:
    """The call records (``<call_id>.json``), not the timelines beside them
    (``<call_id>.timeline.json`` and ``.svg``)."""
    return [p for p in directory.glob("*.json") if not p.name.endswith(".timeline.json")]
