"""The config reference (docs/config-reference.md), generated from the pydantic models.

Keys, types, ranges and defaults come from the schema, meanings from each field's
`description`: the reference cannot drift from what `load_config` accepts, and a test fails
when the committed file is stale. Regenerate with
`python -m gateway config-reference -o docs/config-reference.md`.
"""

from __future__ import annotations

import json
from typing import Any, get_args, get_origin

from pydantic import BaseModel

from .config import GatewayConfig
from .config.fields import _is_model, _unwrap

COMMAND = "python -m gateway config-reference -o docs/config-reference.md"


def render() -> str:
    out = [
        "# Configuration reference",
        "",
        f"Generated from `gateway/config/` by `{COMMAND}`: do not edit by hand.",
        "",
        "One YAML file, validated before anything starts (`python -m gateway check-config "
        "--config FILE`). Every key is optional unless marked required; unknown keys are "
        "errors. Secrets are never read from the file: it names the environment variable that "
        "holds them. An annotated example with every default is "
        "[`config/gateway.yaml`](../config/gateway.yaml).",
        "",
    ]
    _section(out, GatewayConfig, "", 2, {})
    return "\n".join(out).rstrip() + "\n"


def _holds_sections(annotation: Any) -> tuple[str, list[type[BaseModel]]] | None:
    """For a field holding config sections: the path suffix ('', '[]' for a list, '.NAME' for
    a mapping) and the section models (several for a union chosen by `type`)."""
    inner = _unwrap(annotation)
    suffix = ""
    if get_origin(inner) is list:
        inner, suffix = _unwrap(get_args(inner)[0]), "[]"
    elif get_origin(inner) is dict:
        inner, suffix = _unwrap(get_args(inner)[1]), ".NAME"
    models = [inner] if _is_model(inner) else [a for a in get_args(inner) if _is_model(a)]
    return (suffix, models) if models else None


def _section(
    out: list[str], model: type[BaseModel], path: str, level: int, seen: dict[type, str]
) -> None:
    seen.setdefault(model, path)
    schema = model.model_json_schema()
    rows: list[str] = []
    nested: list[tuple[str, Any, tuple[str, list[type[BaseModel]]]]] = []
    for name, field in model.model_fields.items():
        written = field.alias or name  # the key as written in YAML (sip.register)
        key = f"{path}.{written}" if path else written
        holds = _holds_sections(field.annotation)
        if holds is not None:
            nested.append((key, field, holds))
            continue
        prop = schema["properties"][written]
        default = (
            "(required)"
            if field.is_required()
            else _value(field.get_default(call_default_factory=True))
        )
        meaning = (field.description or "").replace("|", "\\|")
        rows.append(f"| `{key}` | {_type(prop)} | {default} | {meaning} |")
    if rows:
        out += ["| key | type | default | meaning |", "|---|---|---|---|", *rows, ""]
    for key, field, (suffix, models) in nested:
        out += [f"{'#' * level} `{key}{suffix}`", "", field.description or "", ""]
        if len(models) == 1 and models[0] in seen:
            out += [f"Each takes the keys of [`{seen[models[0]]}`](#{seen[models[0]]}).", ""]
            continue
        if not field.is_required() and field.get_default(call_default_factory=True) is None:
            out += ["Default: null (off). Its keys, when set:", ""]
        for variant in models:
            if len(models) > 1:
                tag = variant.model_fields["type"].default
                out += [f"With `type: {tag}`: {variant.__doc__ or ''}".rstrip(), ""]
            _section(out, variant, key + suffix, min(level + 1, 4), seen)


def _type(prop: dict[str, Any]) -> str:
    options = prop.get("anyOf")
    if options:
        parts = [_type(p) for p in options if p.get("type") != "null"]
        nullable = any(p.get("type") == "null" for p in options)
        return " or ".join(parts) + (" or null" if nullable else "")
    if "const" in prop:
        return f"`{prop['const']}`"
    if "enum" in prop:
        return " \\| ".join(f"`{v}`" for v in prop["enum"])
    kind = prop.get("type")
    if kind == "array":
        return f"list of {_type(prop.get('items', {}))}"
    if kind in ("integer", "number"):
        return _range("integer" if kind == "integer" else "number", prop)
    return {"string": "text", "boolean": "`true` \\| `false`"}.get(str(kind), str(kind))


def _range(name: str, prop: dict[str, Any]) -> str:
    low = prop.get("minimum")
    low_ex = prop.get("exclusiveMinimum")
    high = prop.get("maximum")
    bounds = []
    if low is not None:
        bounds.append(f"≥ {low:g}")
    if low_ex is not None:
        bounds.append(f"> {low_ex:g}")
    if high is not None:
        bounds.append(f"≤ {high:g}")
    return f"{name} ({', '.join(bounds)})" if bounds else name


def _value(value: Any) -> str:
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    elif isinstance(value, list):
        value = [str(v) if not isinstance(v, int | float | bool) else v for v in value]
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str) and len(value) > 60:
        return "(see meaning)"
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
    return f"`{text}`"
