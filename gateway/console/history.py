"""Ended calls for the console, from the call records (records.calls_dir).

Blocking file reads: call these in a worker thread. Nothing the request says becomes a path:
a call id must look like one (:data:`CALL_ID`) and only names ``<id>.json`` or
``<id>.timeline.svg`` in calls_dir; the transcript and recording paths come from the record
(written by the gateway) and are served only when, resolved, they lie inside
records.transcripts_dir or records.recordings_dir.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CALL_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
MAX_RECORD_BYTES = 1024 * 1024
MAX_TRANSCRIPT_BYTES = 4 * 1024 * 1024
MAX_SCANNED = 5000  # the newest records looked at by one search
MAX_RESULTS = 200
SUMMARY_FIELDS = (
    "call_id",
    "caller",
    "callee",
    "dialed",
    "profile",
    "received_at",
    "duration_s",
    "end_reason",
    "state",
)


@dataclass(frozen=True)
class Search:
    """What to look for: parts of the caller and dialed number, a profile, a day (UTC)."""

    caller: str = ""
    dialed: str = ""
    profile: str = ""
    date: str = ""

    def matches(self, record: dict[str, Any]) -> bool:
        return (
            self.caller.lower() in str(record.get("caller", "")).lower()
            and self.dialed.lower() in str(record.get("dialed", "")).lower()
            and (not self.profile or record.get("profile") == self.profile)
            and str(record.get("received_at", "")).startswith(self.date)
        )


class History:
    """The records of ended calls, and the files each one names."""

    def __init__(
        self, calls_dir: Path | None, transcripts_dir: Path | None, recordings_dir: Path | None
    ) -> None:
        self.calls_dir = calls_dir
        self.transcripts_dir = transcripts_dir
        self.recordings_dir = recordings_dir

    def search(self, query: Search) -> list[dict[str, Any]]:
        """The newest completed records that match, newest first."""
        if self.calls_dir is None:
            return []
        paths = sorted(
            self.calls_dir.glob("*.json"), key=_mtime, reverse=True
        )[:MAX_SCANNED]  # fmt: skip
        found: list[dict[str, Any]] = []
        for path in paths:
            record = _read_json(path)
            if record is None or record.get("state") != "completed":
                continue
            if query.matches(record):
                summary = {key: record.get(key) for key in SUMMARY_FIELDS}
                summary["has_recording"] = bool(record.get("recording"))
                found.append(summary)
                if len(found) >= MAX_RESULTS:
                    break
        return found

    def record(self, call_id: str) -> dict[str, Any] | None:
        path = self._beside(call_id, ".json")
        return _read_json(path) if path is not None else None

    def detail(self, call_id: str) -> dict[str, Any] | None:
        """The record, its transcript's turns, and which files can be fetched."""
        record = self.record(call_id)
        if record is None:
            return None
        timeline = self._beside(call_id, ".timeline.svg")
        return {
            "record": record,
            "turns": self._turns(record),
            "recording": self.recording(record) is not None,
            "timeline": timeline is not None and timeline.is_file(),
        }

    def recording(self, record: dict[str, Any]) -> Path | None:
        """The record's WAV, when it is a file inside records.recordings_dir."""
        path = inside(self.recordings_dir, record.get("recording"))
        return path if path is not None and path.suffix == ".wav" else None

    def timeline(self, call_id: str) -> Path | None:
        path = self._beside(call_id, ".timeline.svg")
        return path if path is not None and path.is_file() else None

    def _beside(self, call_id: str, suffix: str) -> Path | None:
        if self.calls_dir is None or not CALL_ID.fullmatch(call_id):
            return None
        return self.calls_dir / f"{call_id}{suffix}"

    def _turns(self, record: dict[str, Any]) -> list[dict[str, Any]]:
        path = inside(self.transcripts_dir, record.get("transcript"))
        if path is None:
            return []
        try:
            with path.open("rb") as file:
                data = file.read(MAX_TRANSCRIPT_BYTES)
        except OSError:
            return []
        turns = []
        for line in data.splitlines():
            try:
                doc = json.loads(line)
            except ValueError:
                continue  # the last line of a file cut short
            if isinstance(doc, dict) and doc.get("type") == "turn":
                turns.append(doc)
        return turns


def inside(directory: Path | None, name: Any) -> Path | None:
    """`name` as a file that, every link resolved, lies inside `directory` (None if not)."""
    if directory is None or not isinstance(name, str) or not name or "\0" in name:
        return None
    try:
        path = Path(name).resolve(strict=True)
        base = directory.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    return path if path.is_relative_to(base) and path.is_file() else None


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        with path.open("rb") as file:
            data = file.read(MAX_RECORD_BYTES + 1)
    except OSError:
        return None
    if len(data) > MAX_RECORD_BYTES:
        return None
    try:
        doc = json.loads(data)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None
