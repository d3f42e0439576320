"""`GatewayConfig`, the whole file: one field per section (each defined in the module named
after its key), and the rules that tie sections together.
"""

from typing import Any
from urllib.parse import urlsplit

from pydantic import ConfigDict, Field, model_validator

from .agent import PREVIEW_TRANSCRIPTION_MODELS, PREVIEW_VOICES, AgentConfig, ServerVad
from .api import ApiConfig
from .fields import _Model, _one_of
from .hooks import HooksConfig
from .limits import LimitsConfig
from .logging import LoggingConfig
from .media import MediaConfig
from .metrics import MetricsConfig
from .realtime import EMBEDDED_ECHO, OPENAI_HOST, RealtimeConfig
from .records import RecordsConfig
from .routes import Route
from .service import ServiceConfig
from .sip import SipConfig


class GatewayConfig(_Model):
    """The whole gateway configuration: one YAML file with these sections."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    sip: SipConfig = Field(
        default_factory=SipConfig, description="SIP signalling: listener and call admission."
    )
    media: MediaConfig = Field(
        default_factory=MediaConfig, description="RTP audio: port range and codecs."
    )
    limits: LimitsConfig = Field(
        default_factory=LimitsConfig, description="Bounds on every call: its longest duration."
    )
    realtime: RealtimeConfig = Field(
        default_factory=RealtimeConfig,
        description="The Realtime API endpoint (or the embedded echo agent) and its credentials.",
    )
    agent: AgentConfig = Field(
        default_factory=AgentConfig,
        description="The voice agent: instructions, voice, greeting and turn-taking.",
    )
    records: RecordsConfig = Field(
        default_factory=RecordsConfig,
        description="What is kept of each call besides the logs: transcripts.",
    )
    logging: LoggingConfig = Field(
        default_factory=LoggingConfig, description="Log format and level."
    )
    profiles: dict[str, AgentConfig] = Field(
        default_factory=dict,
        description="Named agent profiles chosen by routes. Each is written like the agent "
        "section and inherits every key it does not set from it. In instructions and greeting, "
        "${caller}, ${caller_name}, ${dialed}, ${to} and ${x_...} (an X- header, e.g. "
        "${x_crm_id} for X-CRM-Id) are replaced with the call's values.",
    )
    routes: list[Route] = Field(
        default_factory=list,
        description="Rules that choose a profile for each call, tried in order: the first "
        "match wins; a call no route matches uses the agent section.",
    )
    service: ServiceConfig = Field(
        default_factory=ServiceConfig, description="Stopping with calls in progress (draining)."
    )
    metrics: MetricsConfig = Field(
        default_factory=MetricsConfig,
        description="Prometheus metrics, /healthz and /readyz over HTTP.",
    )
    api: ApiConfig | None = Field(
        None,
        description="The control API over HTTP (list calls, hang up, transfer, speak, send "
        "keys), as {bind, port, token_env}. Default none: no API.",
    )
    hooks: HooksConfig = Field(
        default_factory=HooksConfig,
        description="Webhooks to your systems: one that decides each call before it is "
        "answered, one that receives every call's events.",
    )

    @model_validator(mode="before")
    @classmethod
    def _profiles_inherit_agent(cls, data: Any) -> Any:
        """A profile is the agent section with the profile's own keys on top."""
        if not isinstance(data, dict):
            return data
        agent, profiles = data.get("agent") or {}, data.get("profiles")
        if not isinstance(profiles, dict) or not isinstance(agent, dict):
            return data
        merged = {
            name: {**agent, **profile} if isinstance(profile, dict) else profile
            for name, profile in profiles.items()
        }
        return {**data, "profiles": merged}

    @model_validator(mode="after")
    def _routes_name_profiles(self) -> "GatewayConfig":
        unknown = [
            f"routes[{i}].profile: no profile named {r.profile!r} (profiles: "
            f"{', '.join(self.profiles) or 'none defined'})"
            for i, r in enumerate(self.routes)
            if r.profile not in self.profiles
        ]
        if unknown:
            raise ValueError("; ".join(unknown))
        return self


def _combination_problems(cfg: GatewayConfig) -> list[str]:
    """Settings that are valid alone but not together, as 'dotted.path: reason' lines."""
    rt = cfg.realtime
    problems = []
    if rt.rollover_margin_s >= rt.max_session_s:
        problems.append(
            f"realtime.rollover_margin_s: {rt.rollover_margin_s:g} must be less than "
            f"realtime.max_session_s ({rt.max_session_s:g})"
        )
    host = "" if rt.embedded else (urlsplit(rt.url).hostname or "").lower()
    secret = {"api_key": "API key", "bearer": "API key", "entra": "Entra ID token"}
    if (
        not rt.embedded
        and urlsplit(rt.url).scheme.lower() == "ws"
        and rt.auth.method in secret
        and not rt.allow_insecure_ws
    ):
        problems.append(
            f"realtime.url: a ws:// URL would send the {secret[rt.auth.method]} unencrypted; "
            "use wss://, or set realtime.allow_insecure_ws: true (auth method none needs no "
            "flag)"
        )
    if host == OPENAI_HOST and rt.auth.method == "api_key":
        problems.append(
            "realtime.auth.method: api.openai.com takes the key as 'Authorization: Bearer'; "
            "write method: bearer (api_key is Azure's api-key header)"
        )
    if host == OPENAI_HOST and rt.protocol == "preview":
        problems.append(
            "realtime.protocol: preview is Azure's preview API; api.openai.com speaks ga "
            "(wss://api.openai.com/v1/realtime)"
        )
    if rt.protocol == "preview" and rt.embedded:
        problems.append(f"realtime.protocol: {EMBEDDED_ECHO} speaks ga; remove protocol: preview")
    if rt.protocol == "preview":
        problems += _preview_problems(cfg.agent, "agent")
        for name, profile in cfg.profiles.items():
            problems += _preview_problems(profile, f"profiles.{name}")
    return problems


def _preview_problems(agent: AgentConfig, path: str) -> list[str]:
    """Agent settings the preview protocol cannot carry; adapts the default voice to it."""
    problems = []
    if agent.voice not in PREVIEW_VOICES:
        if "voice" in agent.model_fields_set:
            problems.append(
                f"{path}.voice: {agent.voice} exists only with realtime.protocol: ga; the "
                f"preview protocol's voices are {_one_of(PREVIEW_VOICES)}"
            )
        else:
            agent.voice = "alloy"
    td = agent.turn_detection
    if isinstance(td, ServerVad) and td.idle_timeout_ms is not None:
        problems.append(
            f"{path}.turn_detection.idle_timeout_ms: exists only with realtime.protocol: ga; "
            "remove it for preview"
        )
    for i, tool in enumerate(agent.tools):
        if tool.type == "mcp":
            problems.append(f"{path}.tools[{i}]: MCP servers exist only with realtime.protocol: ga")
    tr = agent.input_transcription
    if tr is not None and tr.model not in PREVIEW_TRANSCRIPTION_MODELS:
        problems.append(
            f"{path}.input_transcription.model: {tr.model} is not available with "
            f"realtime.protocol: preview; use {_one_of(PREVIEW_TRANSCRIPTION_MODELS)}"
        )
    return problems
