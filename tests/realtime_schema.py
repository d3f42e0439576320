"""Strict validation of Realtime events against the official ``openai`` SDK models.

GA events against ``openai.types.realtime``; preview (beta) events against
``openai.types.beta.realtime`` (the ``validate_preview_*`` functions).

Built as in REALTIME_PROTOCOL.md section 5: the SDK unions are ``Annotated[Union[...],
PropertyInfo(discriminator="type")]`` and pydantic ignores ``PropertyInfo``, so the inner union is
re-wrapped with a real pydantic discriminator.

On top of the models, unknown keys are refused: the SDK models allow extra fields, so a misspelled
key (``"silence_duration"`` for ``"silence_duration_ms"``) would otherwise pass silently. The only
extras accepted are the ones the real service is known to send beyond the models
(``session.id``, ``session.object``, ``session.expires_at`` in server events).

Both functions return the parsed SDK model and raise ``pydantic.ValidationError`` (schema) or
:class:`UnknownFieldsError` (extra keys) when the event is invalid.
"""

from __future__ import annotations

from typing import Annotated, Any, get_args

from openai.types.beta.realtime import RealtimeClientEvent as BetaClientEvent
from openai.types.beta.realtime import RealtimeServerEvent as BetaServerEvent
from openai.types.realtime import RealtimeClientEvent, RealtimeServerEvent
from pydantic import BaseModel, Field, TypeAdapter

__all__ = [
    "UnknownFieldsError",
    "validate_client_event",
    "validate_preview_client_event",
    "validate_preview_server_event",
    "validate_server_event",
]


def _discriminated(alias: Any) -> Any:
    return Annotated[get_args(alias)[0], Field(discriminator="type")]


_CLIENT = TypeAdapter(_discriminated(RealtimeClientEvent))
_SERVER = TypeAdapter(_discriminated(RealtimeServerEvent))
_BETA_CLIENT = TypeAdapter(_discriminated(BetaClientEvent))
_BETA_SERVER = TypeAdapter(_discriminated(BetaServerEvent))

# Extra (unmodelled) keys the real service sends, as dotted paths without list indices.
_SERVER_EXTRAS = frozenset({"session.id", "session.object", "session.expires_at"})


class UnknownFieldsError(ValueError):
    """The event validates, but carries keys the SDK models do not define."""


def _extras(value: Any, path: str, out: list[str]) -> None:
    if isinstance(value, BaseModel):
        for key in value.__pydantic_extra__ or {}:
            out.append(f"{path}.{key}" if path else key)
        for name in type(value).model_fields:
            _extras(getattr(value, name), f"{path}.{name}" if path else name, out)
    elif isinstance(value, list | tuple):
        for item in value:
            _extras(item, path, out)


def _check_extras(model: BaseModel, allowed: frozenset[str], d: dict) -> None:
    found: list[str] = []
    _extras(model, "", found)
    unknown = [p for p in found if p not in allowed]
    if unknown:
        raise UnknownFieldsError(
            f"{d.get('type')!r} event has keys the SDK models do not define: {', '.join(unknown)}"
        )


def _validate(adapter: TypeAdapter, allowed: frozenset[str], d: dict) -> BaseModel:
    model = adapter.validate_python(d)
    _check_extras(model, allowed, d)
    return model


def validate_client_event(d: dict) -> BaseModel:
    """Validate one client event (a parsed JSON object) strictly against the GA client union."""
    return _validate(_CLIENT, frozenset(), d)


def validate_server_event(d: dict) -> BaseModel:
    """Validate one server event (a parsed JSON object) strictly against the GA server union."""
    return _validate(_SERVER, _SERVER_EXTRAS, d)


def validate_preview_client_event(d: dict) -> BaseModel:
    """Validate one client event strictly against the preview (beta) client union."""
    return _validate(_BETA_CLIENT, frozenset(), d)


def validate_preview_server_event(d: dict) -> BaseModel:
    """Validate one server event strictly against the preview (beta) server union."""
    return _validate(_BETA_SERVER, _SERVER_EXTRAS, d)
