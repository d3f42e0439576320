"""The config reference (docs/config-reference.md), generated from the pydantic models.

Keys, types, ranges and defaults come from the schema, meanings from each field's
`description`: the reference cannot drift from what `load_config` accepts, and a test fails
when the committed file is stale. Regenerate with
`python -m gateway config-reference -o docs/config-reference.md`.
"""

from __future__ import annotations

import json
from typing import Any, get_args

from pydantic import BaseModel

from .config import GatewayConfig, _is_model, _unwrap

COMMAND = "python -m gateway config-reference -o docs/config-reference.md"


def render() -> str:
    out = [
        "# Configuration reference",
        "",
        f"Generated from `gateway/config.py` by `{COMMAND}`: do not edit by hand.",
        "",
        "One YAML file, validated before anything starts (`python -m gateway check-config "
        "--config FILE`). Every key is optional; unknown keys are errors. Secrets are never "
        "read from the file: it names the environment variable that holds them. An annotated "
        "example with every default is [`config/gateway.yaml`](../config/gateway.yaml).",
        "",
    ]
    for name, field in GatewayConfig.model_fields.items():
        model = _unwrap(field.annotation)
        out += [f"## `{name}`", "", field.description or "", ""]
        _section(out, model, name, model())
    return "\n".join(out).rstrip() + "\n"


def _section(out: list[str], model: type[BaseModel], path: str, defaults: BaseModel) -> None:
    schema = model.model_json_schema()
    rows: list[tuple[str, str, str, str]] = []
    later: list[tuple[str, Any, str]] = []  # nested sections, after this table
    for name, field in model.model_fields.items():
        key = f"{path}.{name}"
        inner = _unwrap(field.annotation)
        variants = [a for a in get_args(inner) if _is_model(a)]
        if _is_model(inner) or variants:
            later.append((key, field, name))
            continue
        prop = schema["properties"][name]
        meaning = (field.description or "").replace("|", "\\|")
        rows.append((f"`{key}`", _type(prop), _value(getattr(defaults, name)), meaning))
    if rows:
        out += ["| key | type | default | meaning |", "|---|---|---|---|"]
        out += [f"| {' | '.join(row)} |" for row in rows]
        out.append("")
    for key, field, name in later:
        _nested(out, key, field, getattr(defaults, name))


def _nested(out: list[str], key: str, field: Any, default: Any) -> None:
    inner = _unwrap(field.annotation)
    variants = [a for a in get_args(inner) if _is_model(a)] or [inner]
    out += [f"### `{key}`", "", field.description or "", ""]
    if default is None:
        out += ["Default: null (off). Its keys, when set:", ""]
    for variant in variants:
        if len(variants) > 1:
            tag = variant.model_fields["type"].default
            out += [f"With `type: {tag}`: {variant.__doc__ or ''}".rstrip(), ""]
        current = default if isinstance(default, variant) else variant()
        _section(out, variant, key, current)


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
