"""`agent.transfer`: how a warm transfer holds the caller and rings the human, and the
context headers every transfer (blind or warm) carries."""

from typing import Annotated

from pydantic import AfterValidator, ConfigDict, Field

from ..sip.transfer_context import MAX_HEADER_VALUE, header_name
from .fields import Float, _Model

MAX_HEADERS = 16


class TransferConfig(_Model):
    """What a transfer_call (tool or API) does beyond the REFER."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    music_on_hold: str | None = Field(
        None,
        description="A WAV file (PCM16, mono, any rate) the caller hears, looped, while held "
        "during a warm transfer; read once at start and resampled to the call's codec. "
        "Default none = a soft tone pattern.",
    )
    ring_timeout_s: Float = Field(
        30.0,
        gt=0,
        le=300,
        description="How long the human's phone may ring on a warm transfer before the "
        "caller is taken back (outcome no_answer). Default 30.",
    )
    headers: dict[
        Annotated[str, AfterValidator(header_name)], Annotated[str, Field(max_length=1000)]
    ] = Field(
        default_factory=dict,
        max_length=MAX_HEADERS,
        description="Headers on the REFER and on a warm transfer's INVITE to the human, e.g. "
        "{X-Call-Summary: '${summary}', User-to-User: '${caller} ${summary}'}: ${...} takes "
        "the call's variables and ${summary} the model's summary; every value is put on one "
        f"line (CR, LF and control characters removed) and cut at {MAX_HEADER_VALUE} "
        "characters; User-to-User is sent hex-encoded with ;encoding=hex (RFC 7433). "
        "Default none.",
    )
