"""The config package's shape: every name users import is still exported, each top-level
section lives in the module named after its YAML key, modules stay small and import only
downwards (no circle)."""

import ast
from pathlib import Path

import pytest

import gateway.config
from gateway.config import GatewayConfig
from gateway.config.fields import _unwrap

PACKAGE = Path(gateway.config.__file__).parent

# Every name imported from gateway.config by gateway/, tests/ and scripts before it became a
# package (private ones included: the config reference and its test use them).
IMPORTED_TODAY = [
    "MAX_OUTPUT_TOKENS",
    "PREVIEW_TRANSCRIPTION_MODELS",
    "PREVIEW_VOICES",
    "SECRETS_MESSAGE",
    "TRANSCRIPTION_MODELS",
    "VOICES",
    "AgentConfig",
    "ConfigError",
    "DtmfConfig",
    "EndCallTool",
    "GatewayConfig",
    "LoggingConfig",
    "ManualTurns",
    "RealtimeConfig",
    "Route",
    "SemanticVad",
    "ServerVad",
    "SipRegisterConfig",
    "SipSessionTimersConfig",
    "Tool",
    "TransferTool",
    "WebhookTool",
    "api_key",
    "check_environment",
    "load_config",
    "parse_config",
    "sip_passwords",
    "_ALL_FIELD_PATHS",
    "_is_model",
    "_unwrap",
]


@pytest.mark.parametrize("name", IMPORTED_TODAY + gateway.config.__all__)
def test_names_are_importable_from_the_package(name: str) -> None:
    assert getattr(gateway.config, name) is not None


# Top-level key -> the module that defines its section (profiles are agent sections).
SECTION_MODULES = {
    "sip": "sip",
    "media": "media",
    "limits": "limits",
    "realtime": "realtime",
    "agent": "agent",
    "records": "records",
    "logging": "logging",
    "profiles": "agent",
    "routes": "routes",
    "service": "service",
    "metrics": "metrics",
    "hooks": "hooks",
}


def test_the_table_names_every_section() -> None:
    assert list(SECTION_MODULES) == list(GatewayConfig.model_fields)


@pytest.mark.parametrize(("key", "module"), SECTION_MODULES.items())
def test_each_section_lives_in_the_module_named_after_its_key(key: str, module: str) -> None:
    annotation = _unwrap(GatewayConfig.model_fields[key].annotation)
    args = getattr(annotation, "__args__", ())
    model = args[-1] if args else annotation  # dict[str, AgentConfig], list[Route]
    assert model.__module__ == f"gateway.config.{module}"
    assert (PACKAGE / f"{module}.py").is_file()


def _modules() -> dict[str, Path]:
    return {p.stem: p for p in sorted(PACKAGE.glob("*.py")) if p.stem != "__init__"}


def test_no_module_is_over_600_lines() -> None:
    sizes = {n: len(p.read_text(encoding="utf-8").splitlines()) for n, p in _modules().items()}
    assert len(sizes) >= 10
    assert {name: n for name, n in sizes.items() if n > 600} == {}


def _runtime_imports(path: Path) -> set[str]:
    """Sibling modules imported when the module runs (not those under `if TYPE_CHECKING`)."""
    found = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names = [node.module] if node.module else [alias.name for alias in node.names]
            found.update(name.split(".")[0] for name in names)
    return found


def test_modules_import_each_other_without_a_circle() -> None:
    graph = {name: _runtime_imports(path) for name, path in _modules().items()}
    assert graph["schema"] >= set(SECTION_MODULES.values())  # the check sees real imports
    done: list[str] = []
    pending = dict(graph)
    while pending:  # peel off modules whose imports are all done; a circle leaves some behind
        ready = [name for name, deps in pending.items() if deps <= set(done)]
        assert ready, f"import circle among {sorted(pending)}"
        for name in ready:
            done.append(name)
            del pending[name]


@pytest.mark.parametrize(("module", "allowed"), [("fields", set()), ("secrets", {"fields"})])
def test_the_lowest_layers_import_no_section(module: str, allowed: set[str]) -> None:
    assert _runtime_imports(PACKAGE / f"{module}.py") <= allowed
