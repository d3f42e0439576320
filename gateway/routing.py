"""Choosing the agent profile for a call, and filling the call's values into its text.

Routes are tried in order and the first match wins, as in a PBX dialplan. Values taken
from the call (caller ID, X- headers) are caller-controlled text going into the model's
instructions, so they are cleaned and cut short before they are inserted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from string import Template
from typing import Any

from aiosipua import IncomingCall
from aiosipua.header_codec import parse_address, parse_uri

from .config import AgentConfig, GatewayConfig, Route

MAX_VALUE_CHARS = 120
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


@dataclass(frozen=True)
class CallInfo:
    """What routing and templating may look at: the INVITE's addressing and headers."""

    dialed: str = ""
    to: str = ""
    caller: str = ""
    caller_name: str = ""
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names

    @classmethod
    def from_invite(cls, call: IncomingCall) -> CallInfo:
        invite = call.invite
        headers = {name.lower(): values[0] for name, values in invite.headers.items() if values}
        return cls(
            dialed=_user_of_uri(invite.uri),
            to=_user(headers.get("to", "")),
            caller=_user(headers.get("from", "")),
            caller_name=_display_name(headers.get("from", "")),
            headers=headers,
        )

    def variables(self) -> dict[str, str]:
        values = {
            "caller": self.caller,
            "caller_name": self.caller_name,
            "dialed": self.dialed,
            "to": self.to,
        }
        for name, value in self.headers.items():
            if name.startswith("x-"):
                values[name.replace("-", "_")] = value
        return {k: _clean(v) for k, v in values.items()}


@dataclass(frozen=True)
class Selection:
    profile: str  # "default" when no route matched
    agent: AgentConfig
    # What the decision webhook attached to the call (hooks/incoming.py): the metadata into
    # its record and events; both, with the call's X- headers, to its webhook tools.
    metadata: Mapping[str, Any] = field(default_factory=dict)
    variables: Mapping[str, str] = field(default_factory=dict)
    # Answering-machine detection of an outbound call (off | detect | voicemail): POST /v1/calls.
    amd: str = "off"


class Router:
    def __init__(self, cfg: GatewayConfig) -> None:
        self._routes = cfg.routes
        self._profiles = cfg.profiles
        self._default = cfg.agent

    def select(
        self,
        call: CallInfo,
        *,
        profile: str | None = None,
        overrides: Mapping[str, Any] | None = None,
        variables: Mapping[str, str] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Selection:
        """The call's profile and agent with its values filled in. A decision webhook's
        answer may name the `profile` (else routes decide), override agent fields
        (`overrides`: instructions, greeting, voice, tools, recording) and add `variables`
        (they win over the call's own of the same name)."""
        name, agent = self._route(call) if profile is None else self._named(profile)
        if overrides:
            agent = agent.model_copy(update=dict(overrides))
        values = {**call.variables(), **(variables or {})}
        return Selection(name, _filled(agent, values), dict(metadata or {}), dict(variables or {}))

    def _route(self, call: CallInfo) -> tuple[str, AgentConfig]:
        for route in self._routes:
            if _matches(route, call):
                return route.profile, self._profiles[route.profile]
        return "default", self._default

    def _named(self, profile: str) -> tuple[str, AgentConfig]:
        if profile == "default" or profile not in self._profiles:
            return "default", self._default
        return profile, self._profiles[profile]


def _filled(agent: AgentConfig, variables: Mapping[str, str]) -> AgentConfig:
    """The agent with ${...} in its instructions and greeting filled from `variables`."""
    instructions = Template(agent.instructions).safe_substitute(variables)
    update: dict[str, str] = {"instructions": instructions}
    if agent.greeting:
        update["greeting"] = Template(agent.greeting).safe_substitute(variables)
    return agent.model_copy(update=update)


def _matches(route: Route, call: CallInfo) -> bool:
    m = route.match
    for pattern, value in ((m.dialed, call.dialed), (m.to, call.to), (m.caller, call.caller)):
        if pattern is not None and not pattern.search(value):
            return False
    for name, pattern in m.headers.items():
        value = call.headers.get(name.lower())
        if value is None or not pattern.search(value):
            return False
    return True


def _clean(value: str) -> str:
    return _CONTROL.sub(" ", value).strip()[:MAX_VALUE_CHARS]


def _user_of_uri(uri: str) -> str:
    try:
        return parse_uri(uri).user or ""
    except (ValueError, IndexError):
        return ""


def _user(header: str) -> str:
    try:
        return parse_address(header).uri.user or ""
    except (ValueError, IndexError):
        return ""


def _display_name(header: str) -> str:
    try:
        return (parse_address(header).display_name or "").strip('"')
    except (ValueError, IndexError):
        return ""
