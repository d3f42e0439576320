"""The `agent.tools` list: the functions the model may call (webhook, end_call,
transfer_call, send_dtmf) and the MCP servers whose tools it may use (mcp).
"""

import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, Field, model_validator

from ..destinations import ip_address_or_none, non_public_kind
from .fields import _Model, _nonblank, _text, sip_target
from .secrets import SECRETS_MESSAGE, _parse_env_name

_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _tool_name(value: object) -> str:
    if not isinstance(value, str) or not _TOOL_NAME.match(value):
        raise ValueError("a tool name is 1-64 letters, digits, _ or - (the model calls it by it)")
    return value


def _json_schema(value: object) -> dict[str, Any]:
    if not isinstance(value, dict) or value.get("type") != "object":
        raise ValueError("parameters must be a JSON schema with type: object")
    return value


def _http_url(value: object) -> str:
    text = _text(value)
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("expected an http:// or https:// URL")
    if parts.username or parts.password:
        raise ValueError(f"the URL must not contain a user name or password; {SECRETS_MESSAGE}")
    return text


class WebhookTool(_Model):
    """A function the model may call, answered by an HTTP POST to your service."""

    type: Literal["webhook"] = Field("webhook", description="webhook")
    name: Annotated[str, BeforeValidator(_tool_name)] = Field(
        description="The function name the model calls, e.g. lookup_order."
    )
    description: Annotated[str, BeforeValidator(_text), AfterValidator(_nonblank)] = Field(
        description="When and why the model should call it: the model reads this."
    )
    parameters: Annotated[dict[str, Any], BeforeValidator(_json_schema)] = Field(
        default_factory=lambda: {"type": "object", "properties": {}},
        description="JSON schema (type: object) of the arguments the model passes.",
    )
    url: Annotated[str, BeforeValidator(_http_url)] = Field(
        description="Where the call is POSTed as JSON {tool, arguments, call}; the JSON "
        "response goes back to the model."
    )
    timeout_s: float = Field(
        5.0, gt=0, le=30, description="How long to wait for the response (s). Default 5."
    )
    headers_from_env: dict[str, Annotated[str, BeforeValidator(_parse_env_name)]] = Field(
        default_factory=dict,
        description="HTTP header name -> name of the environment variable holding its value "
        "(e.g. Authorization: CRM_TOKEN), so secrets stay out of the file. With any header "
        "here the url must be https:// (or allow_insecure_http set).",
    )
    allow_private_addresses: bool = Field(
        False,
        description="Let this webhook reach addresses that are not public: loopback "
        "(127.0.0.0/8, ::1), link-local (169.254.0.0/16, fe80::/10), private (10.0.0.0/8, "
        "172.16.0.0/12, 192.168.0.0/16, fc00::/7), unspecified, multicast and reserved. When "
        "false such a destination is refused: an IP address of that kind in url is a config "
        "error, and a host name that resolves to one (DNS may be hostile, or change between "
        "lookups) makes the tool answer the model with an error; the gateway connects only "
        "to the addresses it checked. Set true for a service on this host or your own "
        "network. Default false.",
    )
    allow_insecure_http: bool = Field(
        False,
        description="Let a webhook with headers_from_env use an http:// url, sending those "
        "secrets unencrypted over the network. Default false: such a tool is a config error.",
    )

    @model_validator(mode="after")
    def _destination_allowed(self) -> "WebhookTool":
        parts = urlsplit(self.url)
        if parts.scheme == "http" and self.headers_from_env and not self.allow_insecure_http:
            raise ValueError(
                "url: an http:// URL would send the headers_from_env secrets unencrypted; use "
                "https://, or set allow_insecure_http: true for this tool"
            )
        address = ip_address_or_none(parts.hostname or "")
        kind = non_public_kind(address) if address is not None else None
        if kind is not None and not self.allow_private_addresses:
            raise ValueError(
                f"url: {address} is a {kind} address; set allow_private_addresses: true for "
                "this tool if it is meant to reach it"
            )
        return self


class EndCallTool(_Model):
    """Lets the model hang up once its last answer has been heard."""

    type: Literal["end_call"] = Field("end_call", description="end_call")
    description: str = Field(
        "End the phone call. Call it after saying goodbye, when the caller is done.",
        description="What the model is told about the tool.",
    )


class TransferTool(_Model):
    """Lets the model transfer the caller (SIP REFER) to a configured destination."""

    type: Literal["transfer_call"] = Field("transfer_call", description="transfer_call")
    targets: dict[str, Annotated[str, AfterValidator(sip_target)]] = Field(
        min_length=1,
        description="Destination name the model chooses -> SIP URI the PBX should call, e.g. "
        "{sales: 'sip:600@pbx.example', support: 'sip:queue-support@pbx.example'}.",
    )
    mode: Literal["blind", "warm"] = Field(
        "blind",
        description="The model's default when it does not choose: blind = REFER the caller "
        "to the target at once; warm = hold the caller, call the human first, brief them "
        "with a summary, then join the two (REFER with Replaces, or a bridge in the gateway "
        "when the caller's side refuses REFER). Default blind.",
    )
    description: str = Field(
        "Transfer the caller to a human or another department.",
        description="What the model is told about the tool.",
    )


class SendDtmfTool(_Model):
    """Lets the model press keys toward the other side (an IVR on an outbound call): RFC 4733
    events, or SIP INFO when the far end's SDP has no telephone-event."""

    type: Literal["send_dtmf"] = Field("send_dtmf", description="send_dtmf")
    max_digits: int = Field(
        32,
        ge=1,
        le=64,
        description="Most keys in one call of the tool (1-64). Default 32.",
    )
    description: str = Field(
        "Press keys on the phone keypad (DTMF), e.g. to choose an option in a voice menu: "
        "digits is a string of 0-9, *, #, A-D, sent in order.",
        description="What the model is told about the tool.",
    )


def _https_url(value: object) -> str:
    text = _http_url(value)
    if urlsplit(text).scheme != "https":
        raise ValueError("an MCP server is reached by the Realtime service: use an https:// URL")
    return text


class McpTool(_Model):
    """A remote MCP server whose tools the model may use. The Realtime service connects to
    it and runs the calls itself (the gateway only declares it), so it must be reachable from
    the service: a public https:// URL."""

    type: Literal["mcp"] = Field("mcp", description="mcp")
    server_label: Annotated[str, BeforeValidator(_tool_name)] = Field(
        description="A name for the server, 1-64 letters, digits, _ or - (the model and the "
        "service's events name it so), e.g. crm."
    )
    server_url: Annotated[str, BeforeValidator(_https_url)] = Field(
        description="The MCP server's https:// URL (Streamable HTTP or SSE), reachable from "
        "the Realtime service."
    )
    allowed_tools: list[Annotated[str, BeforeValidator(_tool_name)]] | None = Field(
        None,
        description="The server's tools the model may call, by name. Default none = all of "
        "them (list them: a server that adds a tool should not widen what callers reach).",
    )
    headers_from_env: dict[str, Annotated[str, BeforeValidator(_parse_env_name)]] = Field(
        default_factory=dict,
        description="HTTP header name -> name of the environment variable holding its value "
        "(e.g. Authorization: CRM_MCP_TOKEN), sent by the service to the server.",
    )
    description: str | None = Field(
        None, description="What the server offers, for the model. Default none."
    )

    @model_validator(mode="after")
    def _reachable(self) -> "McpTool":
        address = ip_address_or_none(urlsplit(self.server_url).hostname or "")
        kind = non_public_kind(address) if address is not None else None
        if kind is not None:
            raise ValueError(
                f"server_url: {address} is a {kind} address, which the Realtime service "
                "cannot reach; give the MCP server a public https:// URL"
            )
        return self


Tool = Annotated[
    WebhookTool | EndCallTool | TransferTool | SendDtmfTool | McpTool,
    Field(discriminator="type"),
]
