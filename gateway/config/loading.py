"""Reading a config: the YAML file (duplicate keys are errors), then the schema, then the
rules between sections, every problem collected into one ConfigError.
"""

import os
from pathlib import Path

import yaml
from pydantic import ValidationError

from .errors import ConfigError, _format_errors, _yaml_error
from .fields import _kind
from .schema import GatewayConfig, _combination_problems


def _duplicate_keys(node: yaml.Node, path: str = "", seen: set[int] | None = None) -> list[str]:
    """YAML silently keeps the last of two equal keys; a config must not."""
    seen = set() if seen is None else seen
    if id(node) in seen:
        return []
    seen.add(id(node))
    problems: list[str] = []
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(
                key_node, yaml.ScalarNode
            ):
                continue
            key = key_node.value
            child = f"{path}.{key}" if path else key
            line = key_node.start_mark.line + 1
            if key in first:
                problems.append(
                    f"{child}: written twice (lines {first[key]} and {line}); "
                    "YAML would silently keep only the last one"
                )
            else:
                first[key] = line
            problems += _duplicate_keys(value_node, child, seen)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            problems += _duplicate_keys(item, f"{path}[{index}]", seen)
    return problems


def _read_yaml(text: str, source: str) -> tuple[object, list[str]]:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, []
        duplicates = [f"{source}: {p}" for p in _duplicate_keys(node)]
        return loader.construct_document(node), duplicates
    except yaml.YAMLError as exc:
        raise ConfigError([f"{source}: {_yaml_error(exc)}"]) from None
    finally:
        loader.dispose()


def parse_config(data: object, source: str = "<config>") -> GatewayConfig:
    """Validate already-parsed config data (None = empty = all defaults).

    Raises ConfigError with every problem, each as 'SOURCE: dotted.path: reason'.
    """
    return _validate(data, source, [])


def _validate(data: object, source: str, earlier: list[str]) -> GatewayConfig:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            [
                *earlier,
                f"{source}: the top level must be a mapping with the sections "
                f"{', '.join(GatewayConfig.model_fields)} (got {_kind(data)})",
            ]
        )
    try:
        config = GatewayConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError([*earlier, *_format_errors(exc, source)]) from None
    problems = [*earlier, *(f"{source}: {p}" for p in _combination_problems(config))]
    if problems:
        raise ConfigError(problems)
    return config


def load_config(path: str | os.PathLike[str]) -> GatewayConfig:
    """Read and validate a YAML config file.

    Raises ConfigError for a missing or unreadable file, a YAML syntax error (with line and
    column), duplicate keys, a top level that is not a mapping, and every schema error.
    """
    source = os.fspath(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{source}: file not found"]) from None
    except IsADirectoryError:
        raise ConfigError([f"{source}: is a directory, not a config file"]) from None
    except PermissionError:
        raise ConfigError([f"{source}: cannot read the file: permission denied"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            [f"{source}: not UTF-8 text (invalid byte at offset {exc.start})"]
        ) from None
    except OSError as exc:
        raise ConfigError([f"{source}: cannot read the file: {exc.strerror or exc}"]) from None
    data, duplicates = _read_yaml(text, source)
    return _validate(data, source, duplicates)
