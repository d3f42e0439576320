"""The `limits` section: bounds on every call."""

from pydantic import ConfigDict, Field

from .fields import Float, _Model


class LimitsConfig(_Model):
    """Bounds on every call, so that no call can keep its slot forever."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    max_call_s: Float = Field(
        14400.0,
        gt=0,
        le=604800,
        description="Longest call, in seconds from the answer: then the gateway hangs up "
        "(BYE, end reason max_call_duration), whatever the call is doing. More than 0, at most "
        "604800 (7 days). Default 14400 (4 hours).",
    )
    wrap_up_s: Float = Field(
        30.0,
        ge=0,
        le=3600,
        description="The model is told this many seconds before max_call_s to finish and say "
        "goodbye (a system message and a response), so the end is not a cut mid-sentence. "
        "0 = off; off as well when max_call_s is not longer. Default 30.",
    )
