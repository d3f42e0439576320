"""The `hooks` section: the systems of yours the gateway calls about each call.

``call_incoming`` decides a call before it is answered; ``events`` follows every call. Both are
HTTP POSTs of JSON signed per the Standard Webhooks specification with the secret named by
``secret_env`` (see :mod:`gateway.hooks.signing`).
"""

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BeforeValidator, ConfigDict, Field

from .fields import Float, Int, _Model, _optional
from .records import _dir_path
from .secrets import _parse_env_name
from .tools import _http_url

EVENT_TYPES = (
    "call.started",
    "call.answered",
    "call.amd",
    "call.transferred",
    "call.tool",
    "call.failed",
    "call.ended",
)


class CallIncomingHook(_Model):
    """Asked before each call is answered: accept, reject or redirect, and how."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    url: Annotated[str, BeforeValidator(_http_url)] = Field(
        description="Where the incoming call is POSTed as JSON {call_id, caller, caller_name, "
        "dialed, to, source, transport, headers}; the JSON answer decides the call."
    )
    timeout_s: Float = Field(
        2.0,
        gt=0,
        le=10,
        description="How long the caller may wait for the answer (s), connection included; "
        "then on_failure applies. More than 0, at most 10. Default 2.",
    )
    secret_env: Annotated[str | None, BeforeValidator(_parse_env_name)] = Field(
        None,
        description="Name of the environment variable holding the signing secret "
        "(Standard Webhooks: whsec_ followed by base64). Default none = requests unsigned.",
    )
    on_failure: Literal["default", "reject"] = Field(
        "default",
        description="What a timeout, an error or an unusable answer does: default = the call "
        "goes on as routes decide; reject = the call is refused (503). Default default.",
    )
    ringing: bool = Field(
        False,
        description="Send 180 Ringing while the hook is asked (the caller hears ringback). "
        "Default false: the caller waits on 100 Trying.",
    )


class EventsHook(_Model):
    """Where the gateway posts what happens on each call, each event at least once."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    url: Annotated[str, BeforeValidator(_http_url)] = Field(
        description="Where each event is POSTed as JSON {id, type, timestamp, call_id, data}; "
        "any 2xx answer means delivered, anything else is retried."
    )
    secret_env: Annotated[str | None, BeforeValidator(_parse_env_name)] = Field(
        None,
        description="Name of the environment variable holding the signing secret "
        "(Standard Webhooks: whsec_ followed by base64). Default none = requests unsigned.",
    )
    events: list[Literal[EVENT_TYPES]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: list(EVENT_TYPES),
        description="Which events to send, of call.started, call.answered, call.amd, "
        "call.transferred, call.tool, call.failed (an outbound call not answered: its SIP "
        "status and why) and call.ended (which carries the call record and the transcript). "
        "Default all of them.",
    )
    outbox_dir: Annotated[Path | None, BeforeValidator(_optional(_dir_path))] = Field(
        None,
        description="Directory of the durable outbox: one file per event not yet delivered, "
        "fsynced before the first attempt, removed after a 2xx, delivered again after a "
        "restart. Created at start; the gateway refuses to start if it is not writable. "
        "Default none = events/ in $STATE_DIRECTORY when systemd sets it (StateDirectory= in "
        "deploy/systemd, /var/lib/sip-realtime-gateway), else events-outbox/ in the working "
        "directory (a developer's run).",
    )
    max_pending: Int = Field(
        10_000,
        ge=1,
        le=1_000_000,
        description="At most this many events wait in the outbox; beyond it the oldest is "
        "dropped (logged, counted in sipgw_events_dropped_total). Default 10000.",
    )
    timeout_s: Float = Field(
        5.0,
        gt=0,
        le=60,
        description="Time allowed for one delivery attempt (s), connection included; "
        "then it counts as failed and is retried. Default 5.",
    )
    retry_max_s: Float = Field(
        300.0,
        gt=0,
        le=3600,
        description="The longest wait between two attempts (s): the back-off doubles from "
        "1 s (with jitter) up to this cap, and retries go on while the event is in the "
        "outbox. Default 300.",
    )


class HooksConfig(_Model):
    """The systems of yours the gateway calls about each call."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    call_incoming: CallIncomingHook | None = Field(
        None,
        description="A webhook that decides each call before it is answered. Default none: "
        "routes decide.",
    )
    events: EventsHook | None = Field(
        None,
        description="A webhook that receives the events of every call, at least once. "
        "Default none.",
    )
