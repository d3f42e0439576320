"""The bodies the control API accepts, validated at the boundary; their JSON schemas are the
OpenAPI document's, so the document and the checks cannot drift apart."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from ..config.fields import MAX_TARGET_CHARS, sip_target
from ..media.key_sender import MAX_PENDING_KEYS

MAX_SAY_CHARS = 2000


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class TransferRequest(_Body):
    target: Annotated[str, AfterValidator(sip_target)] = Field(
        max_length=MAX_TARGET_CHARS,
        description="Where the caller's side is sent (SIP REFER): a sip: or sips: URI.",
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
