"""The `records` section: what is kept of each call besides the logs."""

from pathlib import Path
from typing import Annotated

from pydantic import BeforeValidator, ConfigDict, Field

from .fields import _Model, _nonblank, _optional, _text


def _dir_path(value: object) -> Path:
    text = _nonblank(_text(value))
    if "\0" in text:
        raise ValueError("a path cannot contain a NUL character")
    return Path(text).expanduser()


class RecordsConfig(_Model):
    """What is kept of each call besides the logs."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    transcripts_dir: Annotated[Path | None, BeforeValidator(_optional(_dir_path))] = Field(
        None,
        description="Directory for call transcripts: one JSON-lines file per call (caller "
        "and agent turns, the agent's cut where the caller interrupted, with times). "
        "Created at start if missing; relative paths are from the working directory. "
        "Default none = transcripts only in the log.",
    )
    recordings_dir: Annotated[Path | None, BeforeValidator(_optional(_dir_path))] = Field(
        None,
        description="Directory for call recordings: one stereo WAV per call (caller left, agent "
        "right, as heard: the agent cut where the caller interrupted), for profiles with "
        "recording: true. Created at start if missing. Default none = no recordings.",
    )
    calls_dir: Annotated[Path | None, BeforeValidator(_optional(_dir_path))] = Field(
        None,
        description="Directory for call records: one JSON file per call (times, caller, dialed "
        "number, route, end reason, durations, token usage, tool calls), written whatever "
        "way the call ends. Created at start if missing. Default none = only the log.",
    )
    timeline: bool = Field(
        True,
        description="Write a timeline of each answered call beside its record in calls_dir: "
        "<call_id>.timeline.svg (a picture, with its marks as JSON in its metadata: caller "
        "speech, agent audio as sent, the service's VAD, barge-ins and what was heard, tools, "
        "DTMF, session reconnects and rollovers, packet loss, each turn's response time in "
        "ms; see docs/timeline.md). Only with calls_dir set. Default true.",
    )
