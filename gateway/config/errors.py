"""What a user sees on a bad config: pydantic's errors and YAML syntax errors turned into
'FILE: dotted.path: reason' lines that name the key as written and say how to fix it.
"""

import difflib
import types
from collections.abc import Mapping, Sequence
from typing import Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from .agent import TurnDetection
from .fields import _is_model, _keys, _kind, _unwrap
from .schema import GatewayConfig
from .secrets import SECRETS_MESSAGE, _is_secret_name


class ConfigError(Exception):
    """Carries every problem found, each as 'FILE: dotted.field.path: reason'."""

    errors: list[str]

    def __init__(self, errors: Sequence[str]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))

    def __str__(self) -> str:
        return "\n".join(self.errors)


def _resolve_loc(loc: Sequence[int | str]) -> tuple[str, type[BaseModel] | None]:
    """Dotted path of a pydantic error location, and the model that holds its last key.

    Discriminated-union tags that pydantic inserts (agent.turn_detection.server_vad.x) are
    dropped, so the path is the one the user wrote (agent.turn_detection.x).
    """
    path = ""
    parent: type[BaseModel] | None = GatewayConfig
    current: Any = GatewayConfig
    for item in loc:
        current = _unwrap(current)
        origin = get_origin(current)
        if origin in (Union, types.UnionType):
            members = {m.model_fields["type"].default: m for m in get_args(current) if _is_model(m)}
            if item in members:
                current = members[item]
                continue
            current = None
        if _is_model(current):
            parent = current
            field = _keys(current).get(item) if isinstance(item, str) else None
            path = f"{path}.{item}" if path else str(item)
            current = field.annotation if field is not None else None
        elif origin is list and isinstance(item, int):
            path = f"{path}[{item}]"
            current = get_args(current)[0]
        elif origin is dict:
            path = f"{path}.{item}"
            current = get_args(current)[1]
        else:
            path = f"{path}[{item}]" if isinstance(item, int) else f"{path}.{item}"
            current = None
    return path, parent


def _field_paths(model: type[BaseModel], prefix: str = "") -> dict[str, list[str]]:
    """Every key name in the schema -> the dotted paths where it is valid."""
    found: dict[str, list[str]] = {}
    for name, field in _keys(model).items():
        path = f"{prefix}.{name}" if prefix else name
        found.setdefault(name, []).append(path)
        inner = _unwrap(field.annotation)
        subs = [inner] if _is_model(inner) else [a for a in get_args(inner) if _is_model(a)]
        for sub in subs:
            for key, paths in _field_paths(sub, path).items():
                found.setdefault(key, [])
                found[key] += [p for p in paths if p not in found[key]]
    return found


_ALL_FIELD_PATHS = _field_paths(GatewayConfig)


_TURN_TYPES: tuple[type[BaseModel], ...] = get_args(get_args(TurnDetection)[0])


def _unknown_key_reason(key: object, path: str, parent: type[BaseModel] | None) -> str:
    """Explain a key the schema does not know: a misplaced key, a typo, or a secret."""
    allowed = list(_keys(parent)) if parent is not None else []
    name = str(key)
    what = "section" if parent is GatewayConfig else "key"
    if parent in _TURN_TYPES:
        tag = parent.model_fields["type"].default
        for sibling in _TURN_TYPES:
            fields = list(sibling.model_fields)
            match = [name] if name in fields else difflib.get_close_matches(name, fields, 1, 0.85)
            if sibling is not parent and match and match[0] not in parent.model_fields:
                other = sibling.model_fields["type"].default
                fix = "" if match[0] == name else f"did you mean {match[0]!r}? "
                return f"{fix}{match[0]} is used only with type: {other} (here type is {tag})"
    elsewhere = [p for p in _ALL_FIELD_PATHS.get(name, []) if p != path]
    if elsewhere:
        return (
            f"unknown key here; {name} belongs at {' or '.join(elsewhere)} (check the indentation)"
        )
    typo = difflib.get_close_matches(name, allowed, n=1, cutoff=0.85)
    if typo:
        return f"unknown {what}; did you mean {typo[0]!r}?"
    typo_elsewhere = difflib.get_close_matches(name, list(_ALL_FIELD_PATHS), n=1, cutoff=0.85)
    if typo_elsewhere:
        return f"unknown {what}; did you mean {' or '.join(_ALL_FIELD_PATHS[typo_elsewhere[0]])}?"
    if _is_secret_name(name):
        return SECRETS_MESSAGE
    close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
    if close:
        return f"unknown {what}; did you mean {close[0]!r}?"
    return f"unknown {what}; the {what}s accepted here are {', '.join(allowed)}"


def _reason(err: Mapping[str, Any], path: str, parent: type[BaseModel] | None) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind == "extra_forbidden":
        return _unknown_key_reason(err["loc"][-1] if err["loc"] else "", path, parent)
    if kind in ("value_error", "assertion_error") and "error" in ctx:
        return str(ctx["error"])
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return (
            f"expected a mapping (indented 'key: value' lines), got {_kind(err.get('input', ...))}"
        )
    if kind == "union_tag_invalid":
        return f"type {ctx.get('tag')!r} is not accepted; use {ctx.get('expected_tags')}"
    if kind == "union_tag_not_found":
        return f"missing {ctx.get('discriminator', 'type')}"
    if kind == "string_type":
        return f"expected text, got {_kind(err.get('input', ...))}"
    if kind == "list_type":
        return f"expected a list ('- item' lines or [a, b]), got {_kind(err.get('input', ...))}"
    return str(err["msg"])


def _format_errors(exc: ValidationError, source: str) -> list[str]:
    lines: list[str] = []
    for err in exc.errors(include_url=False):
        path, parent = _resolve_loc(err["loc"])
        reason = _reason(err, path, parent)
        line = f"{source}: {path}: {reason}" if path else f"{source}: {reason}"
        if line not in lines:
            lines.append(line)
    return lines


def _yaml_error(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    reason = f"{where}YAML syntax error: {problem}"
    context = getattr(exc, "context", None)
    context_mark = getattr(exc, "context_mark", None)
    if context and context_mark is not None:
        reason += f" ({context} at line {context_mark.line + 1})"
    if "'\\t'" in problem or "\t" in problem:
        reason += "; YAML does not allow tabs for indentation, use spaces"
    elif "<block end>" in problem:
        reason += "; check the indentation of this line"
    elif "mapping values are not allowed" in problem:
        reason += "; check the indentation, and quote a value that contains ': '"
    return reason
