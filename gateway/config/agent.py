"""The `agent` section (and every entry of `profiles`): instructions, voice, turn detection,
transcription, barge-in, echo suppression, DTMF, tools.
"""

import re
from typing import Annotated, Any, Literal, get_args

from pydantic import BeforeValidator, ConfigDict, Field, field_validator

from .amd import AmdConfig
from .fields import Float, Int, _choice, _kind, _Model, _optional, _text
from .tools import Tool
from .transfer import TransferConfig

DEFAULT_INSTRUCTIONS = (
    "You are a helpful voice assistant answering a telephone call. "
    "Keep every answer short and spoken: one or two sentences, plain words, "
    "no lists, no markdown, no web addresses. "
    "Reply in the caller's language. "
    "If you did not understand the caller, ask them to repeat."
)
Voice = Literal[
    "alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar"
]
VOICES: tuple[str, ...] = get_args(Voice)
PREVIEW_VOICES = VOICES[:8]  # marin and cedar came with the GA protocol
# The transcription models the service accepts (the openai SDK's list; a test keeps them equal).
TranscriptionModel = Literal[
    "whisper-1",
    "gpt-transcribe",
    "gpt-live-transcribe",
    "gpt-4o-mini-transcribe",
    "gpt-4o-mini-transcribe-2025-12-15",
    "gpt-4o-transcribe",
    "gpt-4o-transcribe-diarize",
    "gpt-realtime-whisper",
]
TRANSCRIPTION_MODELS: tuple[str, ...] = get_args(TranscriptionModel)
PREVIEW_TRANSCRIPTION_MODELS = ("whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe")
NoiseReduction = Literal["near_field", "far_field"]
MAX_OUTPUT_TOKENS = 4096


class ServerVad(_Model):
    """Turn detection by the server from silence (voice activity detection)."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    type: Literal["server_vad"] = Field(
        "server_vad", description="server_vad: the caller's turn ends after a silence."
    )
    threshold: Float = Field(
        0.5,
        ge=0,
        le=1,
        description="Speech detection threshold from 0.0 to 1.0; raise it on noisy lines. "
        "Default 0.5.",
    )
    prefix_padding_ms: Int = Field(
        300,
        ge=0,
        le=10_000,
        description="Audio kept from before the detected start of speech, in milliseconds. "
        "Default 300.",
    )
    silence_duration_ms: Int = Field(
        500,
        ge=0,
        le=10_000,
        description="Silence that ends the caller's turn, in milliseconds; lower answers "
        "faster but may cut in on pauses. Default 500.",
    )
    idle_timeout_ms: Int | None = Field(
        None,
        gt=0,
        description="If the caller says nothing for this many milliseconds after the model "
        "finished speaking, the model prompts them again. Default none = never.",
    )
    create_response: bool = Field(
        True,
        description="Answer automatically when the caller's turn ends. Default true.",
    )
    interrupt_response: bool = Field(
        True,
        description="Stop the model's answer when the caller starts talking over it "
        "(barge-in). Default true.",
    )


class SemanticVad(_Model):
    """Turn detection by the model from what the caller says."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    type: Literal["semantic_vad"] = Field(
        "semantic_vad",
        description="semantic_vad: the model judges from the words whether the caller is done.",
    )
    eagerness: Annotated[
        Literal["low", "medium", "high", "auto"], _choice("low", "medium", "high", "auto")
    ] = Field(
        "auto",
        description="How soon the model takes its turn: low (waits up to 8 s), medium "
        "(4 s), high (2 s) or auto (= medium). Default auto.",
    )
    create_response: bool = Field(
        True,
        description="Answer automatically when the caller's turn ends. Default true.",
    )
    interrupt_response: bool = Field(
        True,
        description="Stop the model's answer when the caller starts talking over it "
        "(barge-in). Default true.",
    )


class ManualTurns(_Model):
    """No automatic turn detection."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    type: Literal["none"] = Field(
        "none",
        description="none: no automatic turn detection; the gateway ends turns itself.",
    )


TurnDetection = Annotated[ServerVad | SemanticVad | ManualTurns, Field(discriminator="type")]


def _language(value: object) -> object:
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(
            "YAML read an unquoted language code (no, on, ...) as true/false; put it in "
            'quotes, e.g. language: "no"'
        )
    code = _text(value).strip().lower()
    if not re.fullmatch(r"[a-z]{2}", code):
        raise ValueError(f"{value!r} is not a two-letter ISO-639-1 code such as en, de or fr")
    return code


def _max_tokens(value: object) -> object:
    if isinstance(value, str) and value.strip().lower() == "inf":
        return "inf"
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_OUTPUT_TOKENS:
        return value
    raise ValueError(
        f"expected a whole number from 1 to {MAX_OUTPUT_TOKENS}, or inf, got "
        f"{value if isinstance(value, int) and not isinstance(value, bool) else _kind(value)}"
    )


class InputTranscriptionConfig(_Model):
    """Transcription of the caller's speech."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    model: Annotated[TranscriptionModel, _choice(*TRANSCRIPTION_MODELS)] = Field(
        "gpt-4o-mini-transcribe",
        description="Transcription model: " + ", ".join(TRANSCRIPTION_MODELS) + " (the "
        "preview protocol knows only " + ", ".join(PREVIEW_TRANSCRIPTION_MODELS) + "). "
        "Default gpt-4o-mini-transcribe.",
    )
    language: Annotated[str | None, BeforeValidator(_language)] = Field(
        None,
        description="The caller's language as a two-letter ISO-639-1 code (en, de, fr, ...); "
        "improves accuracy and latency. Default none = detect automatically.",
    )


VOICE_THRESHOLD = 1.0  # -30 dBFS
ENERGY_THRESHOLD = 0.6  # -46 dBFS


class LocalBargeIn(_Model):
    """Local pre-emption: pause the agent the moment the caller's voice is heard here."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    detector: Literal["voice", "energy"] = Field(
        "voice",
        description="What counts as the caller's voice while the agent talks: voice = a "
        "speech detector (WebRTC's) on audio louder than threshold, which steady noise, "
        "clicks, bangs and key tones do not pass; energy = any audio louder than threshold "
        "(the gateway's older detector: noise pauses the agent too). Default voice.",
    )
    threshold: Float | None = Field(
        None,
        ge=0,
        le=1,
        description="Level that counts as the caller's voice, from 0.0 to 1.0 on the same "
        "scale as the embedded agent's VAD (-70 dBFS + 40 dB x threshold: 0.6 = -46 dBFS, "
        "1.0 = -30 dBFS), per 20 ms of audio. Default 1.0 for detector voice (callers at "
        "-30 dBFS and louder; a TV or a crowd below that does not count; below_caller_db "
        "replaces it once the caller and the line are known), 0.6 for energy.",
    )
    below_caller_db: Float | None = Field(
        7.0,
        ge=0,
        le=60,
        description="Detector voice: once the caller has spoken (0.5 s of their speech, heard "
        "while the agent was silent), the gate is their own level minus this many dB (between "
        "-45 and -20 dBFS), kept 3 dB above the loudest 5 % of the line's last 2 s while the "
        "agent talks: a TV or voices in the room further below them do not pause the agent, "
        "and a quiet caller on a quiet line is heard sooner. threshold stands in for their "
        "level until then (kept above the line's background as well). null = threshold "
        "alone. Default 7.",
    )
    min_speech_ms: Int = Field(
        60,
        ge=10,
        le=1000,
        description="How much voice, in milliseconds, pauses the agent; shorter reacts "
        "sooner but a cough or a click pauses it too. Default 60.",
    )
    confirm_ms: Int = Field(
        600,
        ge=50,
        le=5000,
        description="If the service does not report the caller's speech within this many "
        "milliseconds, the agent resumes exactly where it paused. Default 600.",
    )

    @property
    def level(self) -> float:
        """The threshold in effect (0..1), the detector's default when none is set."""
        if self.threshold is not None:
            return self.threshold
        return VOICE_THRESHOLD if self.detector == "voice" else ENERGY_THRESHOLD


class EchoSuppression(_Model):
    """Keep the agent from hearing (and being interrupted by) its own voice echoed back."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    echo_loss_db: Float = Field(
        6.0,
        ge=0,
        le=40,
        description="The echo comes back at least this many dB quieter than the agent's "
        "audio (echo return loss; G.168 expects at least 6 dB from a line, a speakerphone "
        "often gives 10-20). While the agent talks, caller audio quieter than the agent's "
        "loudest recent frame minus this is muted; louder audio is the caller talking "
        "over it and passes. Default 6.",
    )
    tail_ms: Int = Field(
        300,
        ge=20,
        le=2000,
        description="How long after the agent's audio its echo can still come back "
        "(acoustic path plus the phone's and network's delay), in milliseconds. "
        "Default 300.",
    )


class DtmfConfig(_Model):
    """Key presses (RFC 4733 or SIP INFO) handed to the model as text."""

    respond: bool = Field(
        True,
        description="After the caller's keys, ask the model to respond (true), or only put "
        "them in the conversation for its next turn (false). Default true.",
    )
    inter_digit_ms: int = Field(
        1500,
        ge=0,
        le=10_000,
        description="Keys pressed within this many ms of each other go to the model together "
        "as one '[DTMF 1234#]' message; # sends at once. 0 = each key alone. Default 1500.",
    )
    max_digits: int = Field(
        32,
        ge=1,
        le=256,
        description="Longest key entry: one that reaches this many keys goes to the model at "
        "once, so a caller who never pauses cannot build an endless message. Keys faster "
        "than a person presses them (beyond a burst of 20, more than 10 a second) are "
        "dropped and logged (call.dtmf_dropped). Default 32.",
    )


class AgentConfig(_Model):
    """What the voice agent says and how it takes turns."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    instructions: Annotated[str, BeforeValidator(_text)] = Field(
        DEFAULT_INSTRUCTIONS,
        description="Instructions for the model: its role, tone and rules. Default: a phone "
        "assistant that gives short spoken answers in the caller's language.",
    )
    voice: Annotated[Voice, _choice(*VOICES)] = Field(
        "marin",
        description="Voice the model speaks with: alloy, ash, ballad, coral, echo, sage, "
        "shimmer, verse, marin or cedar (marin and cedar exist in the GA protocol only). "
        "Default marin (alloy with realtime.protocol: preview).",
    )
    greeting: str | None = Field(
        None,
        description="When set, the agent speaks first as soon as the call is answered, "
        "following this instruction (e.g. 'Greet the caller and ask how you can help'). "
        "Default none = the agent waits for the caller to speak.",
    )
    turn_detection: TurnDetection = Field(
        default_factory=ServerVad,
        description="How the end of the caller's turn is detected: type server_vad "
        "(silence), semantic_vad (meaning) or none (manual). Default server_vad.",
    )
    input_transcription: InputTranscriptionConfig | None = Field(
        None,
        description="Transcribe what the caller says (for logs and transcripts); {} turns it "
        "on with the defaults. Default none = off.",
    )
    noise_reduction: Annotated[
        NoiseReduction | None,
        BeforeValidator(_optional(_choice(*get_args(NoiseReduction)).func)),
    ] = Field(
        None,
        description="Noise filtering of the caller's audio before turn detection and the "
        "model: near_field (a handset or headset close to the mouth, the usual phone case) "
        "or far_field (a speakerphone or conference room). Default none = off.",
    )
    max_output_tokens: Annotated[int | Literal["inf"], BeforeValidator(_max_tokens)] = Field(
        "inf",
        description=f"Longest answer, in output tokens (1 to {MAX_OUTPUT_TOKENS}; audio takes "
        "about 20 tokens per second of speech), or inf for the model's maximum. Default inf.",
    )
    echo_suppression: EchoSuppression | None = Field(
        None,
        description="Mute the caller's audio while it is only the agent's own voice coming "
        "back (speakerphones, poor hybrids), so the agent does not interrupt itself; {} "
        "turns it on with the defaults. Default none = off.",
    )
    local_barge_in: LocalBargeIn | None = Field(
        default_factory=LocalBargeIn,
        description="Pause the agent as soon as the caller's voice is heard by the gateway, "
        "before the service reports it (100-500 ms sooner); resume if the service does not "
        "confirm. Only with barge-in (turn_detection's interrupt_response). Default on, "
        "detector voice; null = off (the service's VAD alone).",
    )
    silence_timeout_s: Float | None = Field(
        None,
        gt=0,
        le=600,
        description="A caller silent this long after the agent finished speaking is asked "
        "whether they are still there, twice at most; then the agent says goodbye and the "
        "call ends (end reason silence_timeout). Speech or a key starts the count again. "
        "Default none = off.",
    )
    tools: list[Tool] = Field(
        default_factory=list,
        description="Functions the model may call: type webhook (an HTTP POST to your "
        "service), end_call (hang up after the goodbye) or transfer_call (SIP REFER to a "
        "configured target). Default none.",
    )
    dtmf: DtmfConfig = Field(
        default_factory=DtmfConfig,
        description="How the caller's key presses reach the model.",
    )
    recording: bool = Field(
        False,
        description="Record calls of this profile to records.recordings_dir (a stereo WAV of "
        "what was heard). Default false.",
    )
    transfer: TransferConfig = Field(
        default_factory=TransferConfig,
        description="Transfers (transfer_call, POST /v1/calls/{id}/transfer): the music a "
        "warm transfer holds the caller with, how long the human may ring, and the context "
        "headers on the REFER and the human's INVITE (README, Transfers; docs/transfer.md).",
    )
    amd: AmdConfig = Field(
        default_factory=AmdConfig,
        description="Answering-machine detection when the call is answered: mode off, detect "
        "or voicemail, the message left on a machine, and app_amd's cadence parameters "
        "(README, Answering-machine detection; docs/amd.md).",
    )

    @property
    def barge_in(self) -> bool:
        """The caller's speech cuts the answer: turn detection with interrupt_response."""
        return bool(getattr(self.turn_detection, "interrupt_response", False))

    @field_validator("greeting", mode="after")
    @classmethod
    def _blank_greeting_is_none(cls, value: str | None) -> str | None:
        return value if value is None or value.strip() else None

    @field_validator("turn_detection", mode="before")
    @classmethod
    def _turn_detection_type(cls, value: Any) -> Any:
        if value is None:
            raise ValueError(
                "expected a mapping with a type (server_vad, semantic_vad or none); for "
                "manual turns write type: none, or remove the key for the default server_vad"
            )
        if isinstance(value, dict):
            kind = value.get("type", "server_vad")  # the documented default
            if isinstance(kind, str):
                kind = kind.strip().lower()
            value = {**value, "type": kind}
        return value
