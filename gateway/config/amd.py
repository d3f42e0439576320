"""`agent.amd`: answering-machine detection on a call's answer, and the voicemail left."""

from typing import Annotated, Literal

from pydantic import BeforeValidator, ConfigDict, Field, field_validator, model_validator

from .fields import Float, Int, _choice, _Model

AmdMode = Literal["off", "detect", "voicemail"]
AMD_MODES = ("off", "detect", "voicemail")
MAX_MESSAGE_CHARS = 2000


def _off(value: object) -> object:
    """YAML reads an unquoted off as false: that is what was meant."""
    return "off" if value is False else value


class AmdConfig(_Model):
    """Whether a person or an answering machine answered, from the cadence of the first
    seconds (Asterisk app_amd's rules and defaults); the beep, and the message left."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    mode: Annotated[AmdMode, _choice(*AMD_MODES), BeforeValidator(_off)] = Field(
        "off",
        description="off; detect = classify the answer as human, machine or unknown, tell the "
        "model (a system message) and the events (call.amd); the agent's first words wait "
        "for the decision; voicemail = as detect, but on a machine wait for the beep (or the "
        "silence after the greeting), speak voicemail_message word for word and hang up "
        "(end reason voicemail_left). A call placed with an amd of its own (POST /v1/calls) "
        "uses that instead. Default off.",
    )
    voicemail_message: str | None = Field(
        None,
        max_length=MAX_MESSAGE_CHARS,
        description="The message left on an answering machine in voicemail mode, spoken word "
        "for word; ${...} values are filled in as in instructions. Required with mode: "
        "voicemail. Default none.",
    )
    initial_silence_ms: Int = Field(
        2500,
        ge=100,
        le=60_000,
        description="Silence before the callee says anything that makes the answer a "
        "machine (app_amd initial_silence). Default 2500.",
    )
    greeting_ms: Int = Field(
        1500,
        ge=100,
        le=60_000,
        description="Voice in the greeting that makes it a machine: a person says a short "
        "hello (app_amd greeting). Default 1500.",
    )
    after_greeting_silence_ms: Int = Field(
        800,
        ge=50,
        le=60_000,
        description="Silence after a short greeting that makes the answer a human: they wait "
        "for us to speak (app_amd after_greeting_silence). Default 800.",
    )
    total_analysis_time_ms: Int = Field(
        5000,
        ge=500,
        le=60_000,
        description="Longest analysis: no decision by then is unknown, treated as a human "
        "(app_amd total_analysis_time). The agent's first words wait at most this long. "
        "Default 5000.",
    )
    min_word_length_ms: Int = Field(
        100,
        ge=10,
        le=10_000,
        description="Voice this long counts as a word (app_amd min_word_length). Default 100.",
    )
    between_words_silence_ms: Int = Field(
        50,
        ge=10,
        le=10_000,
        description="Silence this long ends a word (app_amd between_words_silence). Default 50.",
    )
    maximum_number_of_words: Int = Field(
        3,
        ge=1,
        le=100,
        description="This many words make the answer a machine (app_amd "
        "maximum_number_of_words). Default 3.",
    )
    maximum_word_length_ms: Int = Field(
        5000,
        ge=100,
        le=60_000,
        description="One word this long makes the answer a machine (app_amd "
        "maximum_word_length). Default 5000.",
    )
    silence_threshold: Int = Field(
        256,
        ge=1,
        le=32767,
        description="A 20 ms frame whose mean absolute sample value (16-bit) is below this is "
        "silence (app_amd silence_threshold; 256 is about -42 dBFS). Raise it on noisy "
        "lines. Default 256.",
    )
    beep_timeout_s: Float = Field(
        30.0,
        gt=0,
        le=300,
        description="voicemail: the longest wait for the beep after a machine was detected; "
        "then the message is left anyway. Default 30.",
    )
    no_beep_silence_ms: Int = Field(
        2000,
        ge=200,
        le=60_000,
        description="voicemail: silence after the greeting, with no beep heard, after which "
        "the message is left (machines that record without a beep). Default 2000.",
    )

    @field_validator("voicemail_message", mode="after")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value if value is None or value.strip() else None

    @model_validator(mode="after")
    def _voicemail_has_a_message(self) -> "AmdConfig":
        if self.mode == "voicemail" and self.voicemail_message is None:
            raise ValueError("mode voicemail needs a voicemail_message (the words to leave)")
        return self
