"""The bodies the control API accepts, validated at the boundary; their JSON schemas are the
OpenAPI document's, so the document and the checks cannot drift apart."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from ..config.fields import MAX_TARGET_CHARS, sip_target
from ..media.key_sender import MAX_PENDING_KEYS
from ..sip.transfer_context import MAX_SUMMARY_CHARS

MAX_SAY_CHARS = 2000


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class TransferRequest(_Body):
    target: Annotated[str, AfterValidator(sip_target)] = Field(
        max_length=MAX_TARGET_CHARS,
        description="Where the caller's side is sent (SIP REFER): a sip: or sips: URI.",
    )
    mode: Literal["blind", "warm"] = Field(
        "blind",
        description="blind: REFER the caller's side to the target now; warm: hold the "
        "caller, call the target, brief the human, then join (REFER with Replaces, or a "
        "bridge in the gateway when the caller's side refuses REFER).",
    )
    summary: str = Field(
        "",
        max_length=MAX_SUMMARY_CHARS,
        description="What the human is told (warm) and what ${summary} is in the context "
        "headers (agent.transfer.headers); empty: the model briefs them itself.",
    )


class SayRequest(_Body):
    text: str = Field(min_length=1, max_length=MAX_SAY_CHARS)
    mode: Literal["speak", "instruct"] = Field(
        "speak",
        description="speak: the agent says this text now, word for word (what it was saying "
        "is cut off); instruct: the model is told it (a system message) and answers when "
        "the caller is not speaking.",
    )


class DtmfRequest(_Body):
    digits: str = Field(
        pattern=r"^[0-9*#A-Da-d]+$",
        min_length=1,
        max_length=MAX_PENDING_KEYS,
        description="Keys sent to the caller as RFC 4733 telephone-events, 100 ms each.",
    )


NUMBER_PATTERN = r"^\+?[0-9A-Za-z*#._-]{1,64}$"
MAX_VALUES = 32
VariableName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]


class PlaceCallRequest(_Body):
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)

    to: str = Field(
        pattern=NUMBER_PATTERN,
        description="The number to call (the user part of sip:TO@sip.outbound.from_domain); "
        "it must fully match one of sip.outbound.destinations.",
    )
    from_: str | None = Field(
        None,
        alias="from",
        pattern=NUMBER_PATTERN,
        description="The caller ID to present; it must fully match one of "
        "sip.outbound.caller_ids. Default: sip.outbound.default_caller_id.",
    )
    profile: str | None = Field(
        None,
        max_length=64,
        description="The agent profile (profiles.NAME) that talks; default: the routes.",
    )
    variables: dict[VariableName, Annotated[str, Field(max_length=1000)]] = Field(
        default_factory=dict,
        max_length=MAX_VALUES,
        description="Values for ${name} in the profile's instructions and greeting (and the "
        "webhook tools' call.variables).",
    )
    metadata: dict[str, Any] = Field(
        default_factory=dict,
        max_length=MAX_VALUES,
        description="Any JSON object: carried into the call's record and every event.",
    )
    ring_timeout_s: float | None = Field(
        None,
        ge=1,
        le=300,
        description="Seconds to let it ring before CANCEL (call.failed, no_answer). Default "
        "sip.outbound.ring_timeout_s.",
    )
    amd: Literal["off", "detect", "voicemail"] = Field(
        "off",
        description="Answering-machine detection: off, detect (human, machine or unknown, "
        "told to the model and the events), voicemail (leave the profile's message after the "
        "beep). Default off.",
    )
