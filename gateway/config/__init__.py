"""Gateway configuration: the one place where it is defined and validated.

``load_config(path)`` reads a YAML file and returns a :class:`GatewayConfig`, or raises
:class:`ConfigError` listing *every* problem found, one per line, as
``FILE: dotted.field.path: reason`` (list items appear as ``sip.allow_from[1]``).

Secrets never live in the file. The file names an environment variable
(``realtime.auth.api_key_env``); :func:`check_environment` reports whether it is usable and
:func:`api_key` reads it. No error message ever contains a secret value.

The ``description`` of every field is the user-facing config reference: it says what the key
means, its unit and its default, for the PBX engineer who reads the generated reference.

The package, from the bottom up: ``fields`` (base model, field types, validators), ``secrets``
(environment variable names), one module per top-level section named after its
YAML key (``sip``, ``media``, ``limits``, ``realtime``, ``agent`` with ``tools``, ``records``,
``logging``, ``routes``, ``service``, ``metrics``), ``schema`` (``GatewayConfig`` and the rules
between sections), ``environment`` (the variables a whole config relies on, and their values),
``errors`` (the messages a user sees) and ``loading`` (file -> config).
Everything is imported from here: ``from gateway.config import X``. A new key goes into
the class of its section, in the module named after the section; then regenerate the
reference (``python -m gateway config-reference -o docs/config-reference.md``).
"""

from .agent import (
    DEFAULT_INSTRUCTIONS,
    MAX_OUTPUT_TOKENS,
    PREVIEW_TRANSCRIPTION_MODELS,
    PREVIEW_VOICES,
    TRANSCRIPTION_MODELS,
    VOICES,
    AgentConfig,
    DtmfConfig,
    EchoSuppression,
    InputTranscriptionConfig,
    LocalBargeIn,
    ManualTurns,
    NoiseReduction,
    SemanticVad,
    ServerVad,
    TranscriptionModel,
    TurnDetection,
    Voice,
)
from .amd import AmdConfig
from .api import ApiConfig
from .environment import (
    api_key,
    api_token,
    check_environment,
    outbound_password,
    sip_passwords,
)
from .errors import _ALL_FIELD_PATHS as _ALL_FIELD_PATHS
from .errors import ConfigError
from .fields import Float, Int, IPNetwork, NetworkEntry
from .fields import _is_model as _is_model
from .fields import _unwrap as _unwrap
from .hooks import EVENT_TYPES, CallIncomingHook, EventsHook, HooksConfig
from .limits import LimitsConfig
from .loading import load_config, parse_config
from .logging import LoggingConfig
from .media import MediaConfig
from .metrics import MetricsConfig
from .outbound import SipOutboundAuthConfig, SipOutboundConfig
from .realtime import EMBEDDED_ECHO, OPENAI_HOST, AuthConfig, RealtimeConfig
from .records import RecordsConfig
from .routes import Regex, Route, RouteMatch
from .schema import GatewayConfig
from .secrets import SECRETS_MESSAGE, hook_secret
from .service import ServiceConfig
from .sip import (
    SipAuthConfig,
    SipConfig,
    SipRegisterConfig,
    SipSessionTimersConfig,
    SipTcpConfig,
    SipTlsConfig,
    SipUserConfig,
)
from .tools import EndCallTool, McpTool, SendDtmfTool, Tool, TransferTool, WebhookTool
from .transfer import TransferConfig

__all__ = [
    "DEFAULT_INSTRUCTIONS",
    "EMBEDDED_ECHO",
    "EVENT_TYPES",
    "MAX_OUTPUT_TOKENS",
    "OPENAI_HOST",
    "PREVIEW_TRANSCRIPTION_MODELS",
    "PREVIEW_VOICES",
    "SECRETS_MESSAGE",
    "TRANSCRIPTION_MODELS",
    "VOICES",
    "AgentConfig",
    "AmdConfig",
    "ApiConfig",
    "AuthConfig",
    "CallIncomingHook",
    "ConfigError",
    "DtmfConfig",
    "EchoSuppression",
    "EndCallTool",
    "EventsHook",
    "Float",
    "GatewayConfig",
    "HooksConfig",
    "IPNetwork",
    "InputTranscriptionConfig",
    "Int",
    "LimitsConfig",
    "LocalBargeIn",
    "LoggingConfig",
    "ManualTurns",
    "McpTool",
    "MediaConfig",
    "MetricsConfig",
    "NetworkEntry",
    "NoiseReduction",
    "RealtimeConfig",
    "RecordsConfig",
    "Regex",
    "Route",
    "RouteMatch",
    "SemanticVad",
    "SendDtmfTool",
    "ServerVad",
    "ServiceConfig",
    "SipAuthConfig",
    "SipConfig",
    "SipOutboundAuthConfig",
    "SipOutboundConfig",
    "SipRegisterConfig",
    "SipSessionTimersConfig",
    "SipTcpConfig",
    "SipTlsConfig",
    "SipUserConfig",
    "Tool",
    "TranscriptionModel",
    "TransferConfig",
    "TransferTool",
    "TurnDetection",
    "Voice",
    "WebhookTool",
    "api_key",
    "api_token",
    "check_environment",
    "hook_secret",
    "load_config",
    "outbound_password",
    "parse_config",
    "sip_passwords",
]
