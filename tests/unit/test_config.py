"""Configuration: shipped files load, defaults, and every error names file and dotted path."""

import ipaddress
import types
from pathlib import Path
from typing import Any, get_args, get_origin

import pytest
import yaml
from pydantic import BaseModel

from gateway.config import (
    SECRETS_MESSAGE,
    ConfigError,
    GatewayConfig,
    ManualTurns,
    SemanticVad,
    ServerVad,
    SipRegisterConfig,
    api_key,
    check_environment,
    load_config,
    parse_config,
)

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "config" / "gateway.yaml"
AZURE_EXAMPLE = REPO / "config" / "azure.example.yaml"
AZURE_URL = "wss://res.openai.azure.com/openai/v1/realtime"
KEY = "0123456789abcdef0123456789abcdef"


def write(tmp_path: Path, text: str, name: str = "gw.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def errors_of(data: object, source: str = "x.yaml") -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, source)
    return info.value.errors


def file_errors(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == "\n".join(info.value.errors)
    return info.value.errors


def only(errors: list[str], prefix: str) -> str:
    """The single error line starting with prefix ('FILE: dotted.path: ')."""
    matching = [e for e in errors if e.startswith(prefix)]
    assert len(matching) == 1, errors
    return matching[0]


# ---------------------------------------------------------------------------------------------
# Shipped files and defaults


def test_shipped_default_config_loads_and_runs_the_echo_agent() -> None:
    cfg = load_config(SHIPPED)
    assert cfg.realtime.embedded
    assert cfg.realtime.url == "embedded:echo"
    assert (cfg.sip.bind, cfg.sip.port, cfg.sip.transports) == ("0.0.0.0", 5060, ["udp"])
    assert check_environment(cfg, {}) == []
    assert api_key(cfg, {"AZURE_OPENAI_API_KEY": KEY}) is None


def test_shipped_default_config_states_exactly_the_defaults() -> None:
    assert load_config(SHIPPED) == parse_config({})


def _keys(model: type[BaseModel]) -> dict[str, Any]:
    """Nested dict of every key of a model (server_vad for the turn_detection union)."""
    tree: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        annotation = field.annotation
        members = [a for a in get_args(annotation) if a is not type(None)]
        if get_origin(annotation) in (types.UnionType,) and len(members) > 1:
            annotation = ServerVad if ServerVad in members else members[0]
        elif members and isinstance(members[0], type) and issubclass(members[0], BaseModel):
            annotation = None  # optional sub-model (input_transcription): shipped as null
        is_model = isinstance(annotation, type) and issubclass(annotation, BaseModel)
        tree[field.alias or name] = _keys(annotation) if is_model else None
    return tree


def _assert_all_keys(expected: dict[str, Any], actual: Any, path: str) -> None:
    assert isinstance(actual, dict), path
    for key, sub in expected.items():
        assert key in actual, f"{path}{key} missing from config/gateway.yaml"
        if sub is not None:
            _assert_all_keys(sub, actual[key], f"{path}{key}.")


def test_shipped_default_config_lists_every_key() -> None:
    raw = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
    _assert_all_keys(_keys(GatewayConfig), raw, "")


def test_azure_example_loads_ga_with_api_key_from_environment() -> None:
    cfg = load_config(AZURE_EXAMPLE)
    rt = cfg.realtime
    assert not rt.embedded
    assert rt.url.startswith("wss://") and rt.url.endswith("/openai/v1/realtime")
    assert (rt.protocol, rt.api_version) == ("ga", None)
    assert (rt.auth.method, rt.auth.api_key_env) == ("api_key", "AZURE_OPENAI_API_KEY")
    assert check_environment(cfg, {"AZURE_OPENAI_API_KEY": KEY}) == []
    assert check_environment(cfg, {}) == [
        "realtime.auth.api_key_env: environment variable AZURE_OPENAI_API_KEY is not set"
    ]


@pytest.mark.parametrize("text", ["", "# nothing but a comment\n", "{}\n", "---\n"])
def test_empty_file_and_empty_mapping_give_the_defaults(tmp_path: Path, text: str) -> None:
    cfg = load_config(write(tmp_path, text))
    assert cfg == parse_config({}) == parse_config(None)


def test_defaults() -> None:
    cfg = parse_config({})
    assert cfg.sip.bind == "0.0.0.0"
    assert cfg.sip.port == 5060
    assert cfg.sip.transports == ["udp"]
    assert cfg.sip.advertise_address is None
    assert cfg.sip.allow_from == [
        ipaddress.ip_network(n)
        for n in ("127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
    ]
    assert cfg.sip.max_calls == 100
    assert (cfg.media.rtp_port_min, cfg.media.rtp_port_max) == (10000, 20000)
    assert cfg.media.codecs == ["PCMU", "PCMA"]
    assert (cfg.media.strict_rtp, cfg.media.rtp_learn_packets) == (True, 4)
    rt = cfg.realtime
    assert (rt.url, rt.deployment, rt.protocol, rt.api_version) == (
        "embedded:echo",
        "gpt-realtime",
        "ga",
        None,
    )
    assert rt.embedded
    assert (rt.auth.method, rt.auth.api_key_env) == ("api_key", "AZURE_OPENAI_API_KEY")
    assert rt.auth.entra_scope == "https://cognitiveservices.azure.com/.default"
    assert (rt.audio_format, rt.connect_timeout_s) == ("pcm16", 5.0)
    agent = cfg.agent
    assert "short" in agent.instructions
    assert (agent.voice, agent.greeting, agent.input_transcription) == ("marin", None, None)
    assert agent.turn_detection == ServerVad(
        threshold=0.5,
        prefix_padding_ms=300,
        silence_duration_ms=500,
        idle_timeout_ms=None,
        create_response=True,
        interrupt_response=True,
    )
    assert (cfg.logging.format, cfg.logging.level) == (None, "info")


def test_every_field_has_a_description() -> None:
    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            assert field.description, f"{prefix}{name} has no description"
            for sub in (field.annotation, *get_args(field.annotation)):
                if isinstance(sub, type) and issubclass(sub, BaseModel):
                    walk(sub, f"{prefix}{name}.")

    walk(GatewayConfig, "")
    for model in (ServerVad, SemanticVad, ManualTurns):
        walk(model, "agent.turn_detection.")


# ---------------------------------------------------------------------------------------------
# Accepted forms and normalisation


def test_normalisation_and_accepted_forms() -> None:
    cfg = parse_config(
        {
            "sip": {"transports": ["UDP", "tcp"], "allow_from": ["10.1.2.3/8", "2001:db8::1"]},
            "media": {"codecs": ["pcma", "Pcmu"]},
            "realtime": {"url": AZURE_URL + "/", "protocol": "GA", "auth": {"method": "Entra"}},
            "agent": {"voice": "Cedar", "input_transcription": {"language": "EN"}},
            "logging": {"level": "WARNING", "format": "Json"},
        }
    )
    assert cfg.sip.transports == ["udp", "tcp"]
    assert cfg.sip.allow_from == [
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("2001:db8::1/128"),
    ]
    assert cfg.media.codecs == ["PCMA", "PCMU"]  # our preference order is kept
    assert cfg.realtime.url == AZURE_URL
    assert (cfg.realtime.protocol, cfg.realtime.auth.method) == ("ga", "entra")
    assert cfg.agent.voice == "cedar"
    assert cfg.agent.input_transcription is not None
    assert cfg.agent.input_transcription.model == "gpt-4o-mini-transcribe"
    assert cfg.agent.input_transcription.language == "en"
    assert (cfg.logging.level, cfg.logging.format) == ("warning", "json")
    assert cfg.model_dump(mode="json")["sip"]["allow_from"] == ["10.0.0.0/8", "2001:db8::1/128"]


def test_preview_protocol_with_api_version() -> None:
    cfg = parse_config(
        {
            "realtime": {
                "url": "wss://res.openai.azure.com/openai/realtime",
                "protocol": "preview",
                "api_version": "2025-04-01-preview",
            }
        }
    )
    assert cfg.realtime.api_version == "2025-04-01-preview"


def test_turn_detection_variants() -> None:
    def td(value: object) -> object:
        return parse_config({"agent": {"turn_detection": value}}).agent.turn_detection

    assert td({"type": "semantic_vad", "eagerness": "high"}) == SemanticVad(eagerness="high")
    assert td({"type": "none"}) == ManualTurns()
    # type left out = the default server_vad, with the given overrides
    assert td({"silence_duration_ms": 800}) == ServerVad(silence_duration_ms=800)


def test_empty_section_means_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "sip:\nmedia:\nrealtime:\n  auth:\n"))
    assert cfg == parse_config({})


# ---------------------------------------------------------------------------------------------
# Errors: each names the file and the dotted path


def test_unknown_top_level_key(tmp_path: Path) -> None:
    errors = file_errors(write(tmp_path, "sipp:\n  port: 5060\n"))
    line = only(errors, f"{tmp_path / 'gw.yaml'}: sipp: ")
    assert "did you mean 'sip'" in line


def test_unknown_nested_key(tmp_path: Path) -> None:
    path = write(tmp_path, "sip:\n  prot: 5060\n")
    assert file_errors(path) == [f"{path}: sip.prot: unknown key; did you mean 'port'?"]


def test_key_at_the_wrong_level_points_to_where_it_belongs() -> None:
    line = only(errors_of({"port": 5060}), "x.yaml: port: ")
    assert "sip.port" in line


def test_unknown_key_inside_turn_detection_uses_the_written_path() -> None:
    errors = errors_of({"agent": {"turn_detection": {"type": "server_vad", "thresold": 0.4}}})
    assert errors == [
        "x.yaml: agent.turn_detection.thresold: unknown key; did you mean 'threshold'?"
    ]


def test_key_of_another_turn_detection_type_says_which_type_it_belongs_to() -> None:
    errors = errors_of({"agent": {"turn_detection": {"type": "server_vad", "eagerness": "low"}}})
    assert errors == [
        "x.yaml: agent.turn_detection.eagerness: eagerness is used only with type: "
        "semantic_vad (here type is server_vad)"
    ]


@pytest.mark.parametrize("port", [0, 65536, "fifty"])
def test_bad_port(tmp_path: Path, port: object) -> None:
    path = write(tmp_path, f"sip:\n  port: {port}\n")
    only(file_errors(path), f"{path}: sip.port: ")


def test_bad_port_message_is_pydantics() -> None:
    assert errors_of({"sip": {"port": 70000}}, "config/x.yaml") == [
        "config/x.yaml: sip.port: Input should be less than or equal to 65535"
    ]


def test_bad_cidr_names_the_list_index() -> None:
    errors = errors_of({"sip": {"allow_from": ["10.0.0.0/8", "10.0.0.300/8"]}})
    line = only(errors, "x.yaml: sip.allow_from[1]: ")
    assert "10.0.0.300/8" in line and "CIDR" in line


def test_empty_allow_from_is_refused() -> None:
    only(errors_of({"sip": {"allow_from": []}}), "x.yaml: sip.allow_from: ")


@pytest.mark.parametrize(
    ("sip", "path"),
    [
        ({"bind": "eth0"}, "sip.bind"),
        ({"transports": ["sctp"]}, "sip.transports[0]"),
        ({"transports": ["udp", "UDP"]}, "sip.transports"),
        ({"transports": []}, "sip.transports"),
        ({"advertise_address": "0.0.0.0"}, "sip.advertise_address"),
        ({"advertise_address": "bad host!"}, "sip.advertise_address"),
        ({"max_calls": 0}, "sip.max_calls"),
    ],
)
def test_bad_sip_values(sip: dict[str, object], path: str) -> None:
    only(errors_of({"sip": sip}), f"x.yaml: {path}: ")


def test_advertise_address_accepts_ip_and_host_name() -> None:
    assert parse_config({"sip": {"advertise_address": "gw.example.com"}}).sip.advertise_address
    assert parse_config({"sip": {"advertise_address": "203.0.113.7"}}).sip.advertise_address


def test_bad_codec() -> None:
    line = only(errors_of({"media": {"codecs": ["PCMU", "G729"]}}), "x.yaml: media.codecs[1]: ")
    assert "G729" in line and "PCMU" in line and "PCMA" in line


@pytest.mark.parametrize(
    "codecs", [[], ["PCMU", "pcmu"]], ids=["empty", "duplicate-after-normalising"]
)
def test_codecs_non_empty_and_unique(codecs: list[str]) -> None:
    only(errors_of({"media": {"codecs": codecs}}), "x.yaml: media.codecs: ")


@pytest.mark.parametrize(("low", "high"), [(20000, 20000), (20000, 10000)])
def test_rtp_range_must_hold_two_ports(low: int, high: int) -> None:
    errors = errors_of({"media": {"rtp_port_min": low, "rtp_port_max": high}})
    assert "rtp_port_min" in only(errors, "x.yaml: media.rtp_port_max: ")


def test_rtp_range_of_two_ports_is_enough() -> None:
    parse_config({"media": {"rtp_port_min": 10000, "rtp_port_max": 10001}})


@pytest.mark.parametrize("packets", [0, 1, 51])
def test_rtp_learn_packets_is_a_run_of_2_to_50(packets: int) -> None:
    only(errors_of({"media": {"rtp_learn_packets": packets}}), "x.yaml: media.rtp_learn_packets: ")


def test_rtp_port_below_1024() -> None:
    only(errors_of({"media": {"rtp_port_min": 80}}), "x.yaml: media.rtp_port_min: ")


@pytest.mark.parametrize(
    "url",
    ["ftp://example.com/realtime", "embedded:parrot", "wss://", "realtime.example.com", 42],
)
def test_bad_url_names_the_accepted_forms(url: object) -> None:
    line = only(errors_of({"realtime": {"url": url}}), "x.yaml: realtime.url: ")
    assert "embedded:echo" in line or "embedded agent" in line
    if url != "embedded:parrot":
        assert "ws://" in line and "wss://" in line


def test_https_url_suggests_wss() -> None:
    line = only(
        errors_of({"realtime": {"url": "https://res.openai.azure.com/openai/v1/realtime"}}),
        "x.yaml: realtime.url: ",
    )
    assert "wss://" in line


def test_url_with_query_string_is_refused() -> None:
    url = AZURE_URL + "?model=gpt-realtime"
    line = only(errors_of({"realtime": {"url": url}}), "x.yaml: realtime.url: ")
    assert "realtime.deployment" in line


def test_preview_without_api_version() -> None:
    errors = errors_of({"realtime": {"protocol": "preview"}})
    assert "required" in only(errors, "x.yaml: realtime.api_version: ")


def test_api_version_with_ga() -> None:
    errors = errors_of({"realtime": {"api_version": "2025-04-01-preview"}})
    assert "preview" in only(errors, "x.yaml: realtime.api_version: ")


def test_protocol_that_contradicts_the_azure_path() -> None:
    errors = errors_of({"realtime": {"url": "wss://res.openai.azure.com/openai/realtime"}})
    assert "preview" in only(errors, "x.yaml: realtime.protocol: ")


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ({"realtime": {"auth": {"api_key": "sk-live-123"}}}, "realtime.auth.api_key"),
        ({"realtime": {"api_key": "sk-live-123"}}, "realtime.api_key"),
        ({"realtime": {"auth": {"key": "sk-live-123"}}}, "realtime.auth.key"),
        ({"token": "sk-live-123"}, "token"),
        ({"sip": {"password": "sk-live-123"}}, "sip.password"),
        ({"agent": {"client_secret": "sk-live-123"}}, "agent.client_secret"),
    ],
)
def test_secret_in_yaml_is_refused_with_the_environment_hint(
    data: dict[str, object], path: str
) -> None:
    errors = errors_of(data)
    assert errors == [f"x.yaml: {path}: {SECRETS_MESSAGE}"]
    assert "sk-live-123" not in "\n".join(errors)


def test_secret_message_is_the_documented_sentence() -> None:
    assert SECRETS_MESSAGE == (
        "secrets are not read from the config file; "
        "set the environment variable named by realtime.auth.api_key_env"
    )


def test_secret_in_yaml_file(tmp_path: Path) -> None:
    path = write(tmp_path, "realtime:\n  auth:\n    api_key: sk-proj-abcdef\n")
    errors = file_errors(path)
    assert errors == [f"{path}: realtime.auth.api_key: {SECRETS_MESSAGE}"]


@pytest.mark.parametrize("value", ["sk-proj-abcdefghijklmnop", KEY, "A" * 20 + "1234" + "b" * 60])
def test_api_key_env_holding_a_key_says_so_without_echoing_it(value: str) -> None:
    errors = errors_of({"realtime": {"auth": {"api_key_env": value}}})
    line = only(errors, "x.yaml: realtime.auth.api_key_env: ")
    assert "looks like an API key" in line
    assert value not in line


@pytest.mark.parametrize("value", ["1KEY", "MY-KEY", "MY KEY", ""])
def test_api_key_env_must_be_a_variable_name(value: str) -> None:
    line = only(
        errors_of({"realtime": {"auth": {"api_key_env": value}}}),
        "x.yaml: realtime.auth.api_key_env: ",
    )
    assert "environment variable" in line


def test_typo_of_api_key_env_is_a_typo_not_a_secret() -> None:
    errors = errors_of({"realtime": {"auth": {"api_key_evn": "MY_KEY"}}})
    assert errors == ["x.yaml: realtime.auth.api_key_evn: unknown key; did you mean 'api_key_env'?"]


def test_secret_in_url_is_refused_without_echoing_it() -> None:
    errors = errors_of({"realtime": {"url": AZURE_URL + "?api-key=s3cr3t"}})
    assert SECRETS_MESSAGE in only(errors, "x.yaml: realtime.url: ")
    assert "s3cr3t" not in "\n".join(errors)


@pytest.mark.parametrize(
    ("agent", "path"),
    [
        ({"voice": "robot"}, "agent.voice"),
        ({"turn_detection": {"type": "push_to_talk"}}, "agent.turn_detection"),
        ({"turn_detection": {"threshold": 1.5}}, "agent.turn_detection.threshold"),
        (
            {"turn_detection": {"type": "semantic_vad", "eagerness": "max"}},
            "agent.turn_detection.eagerness",
        ),
        ({"turn_detection": None}, "agent.turn_detection"),
        ({"input_transcription": {"language": "english"}}, "agent.input_transcription.language"),
        ({"instructions": ["a", "b"]}, "agent.instructions"),
    ],
)
def test_bad_agent_values(agent: dict[str, object], path: str) -> None:
    only(errors_of({"agent": agent}), f"x.yaml: {path}: ")


def test_norwegian_language_code_read_as_boolean_gets_a_quoting_hint(tmp_path: Path) -> None:
    path = write(tmp_path, "agent:\n  input_transcription:\n    language: no\n")
    line = only(file_errors(path), f"{path}: agent.input_transcription.language: ")
    assert "quotes" in line


@pytest.mark.parametrize(
    ("logging", "path"),
    [({"level": "verbose"}, "logging.level"), ({"format": "xml"}, "logging.format")],
)
def test_bad_logging_values(logging: dict[str, object], path: str) -> None:
    only(errors_of({"logging": logging}), f"x.yaml: {path}: ")


@pytest.mark.parametrize("timeout", [0, -1, 61])
def test_bad_connect_timeout(timeout: float) -> None:
    only(
        errors_of({"realtime": {"connect_timeout_s": timeout}}),
        "x.yaml: realtime.connect_timeout_s: ",
    )


def test_section_that_is_not_a_mapping() -> None:
    line = only(errors_of({"sip": ["port", 5060]}), "x.yaml: sip: ")
    assert "mapping" in line


def test_yaml_syntax_error_has_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "sip:\n  port: 5060\n  transports: [udp\nmedia: {}\n")
    [line] = file_errors(path)
    assert line.startswith(f"{path}: line ")
    assert "YAML syntax error" in line and "column" in line


def test_yaml_indentation_error_points_at_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "sip:\n  port: 5060\n bind: 0.0.0.0\n")
    [line] = file_errors(path)
    assert line.startswith(f"{path}: line 3, column 2: YAML syntax error")
    assert "indentation" in line


def test_tab_indentation_gets_a_hint(tmp_path: Path) -> None:
    path = write(tmp_path, "sip:\n\tport: 5060\n")
    [line] = file_errors(path)
    assert line.startswith(f"{path}: line 2, column 1: ") and "tabs" in line


def test_duplicate_key_is_an_error_not_a_silent_override(tmp_path: Path) -> None:
    path = write(tmp_path, "sip:\n  port: 5060\n  max_calls: 10\n  port: 5070\n")
    assert file_errors(path) == [
        f"{path}: sip.port: written twice (lines 2 and 4); "
        "YAML would silently keep only the last one"
    ]


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    assert file_errors(path) == [f"{path}: file not found"]


def test_directory_instead_of_file(tmp_path: Path) -> None:
    [line] = file_errors(tmp_path)
    assert line.startswith(f"{tmp_path}: ")


@pytest.mark.parametrize(
    ("text", "kind"), [("- sip\n- media\n", "a list"), ("just words\n", "text")]
)
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str, kind: str) -> None:
    path = write(tmp_path, text)
    [line] = file_errors(path)
    assert line.startswith(f"{path}: the top level must be a mapping")
    assert kind in line


def test_parse_config_top_level_list() -> None:
    [line] = errors_of(["sip"], "<test>")
    assert line.startswith("<test>: the top level must be a mapping")


def test_all_errors_are_reported_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
sip:
  port: 99999
  allow_from: [10.0.0.0/8, not-a-network]
  colour: blue
media:
  codecs: [PCMU, G729]
  rtp_port_min: 30000
  rtp_port_max: 20000
realtime:
  url: http://localhost:8080
  protocol: preview
  auth:
    api_key: sk-do-not-leak
agent:
  voice: robot
logging:
  level: loud
""",
    )
    errors = file_errors(path)
    expected_paths = [
        "sip.port",
        "sip.allow_from[1]",
        "sip.colour",
        "media.codecs[1]",
        "media.rtp_port_max",
        "realtime.url",
        "realtime.api_version",
        "realtime.auth.api_key",
        "agent.voice",
        "logging.level",
    ]
    for dotted in expected_paths:
        only(errors, f"{path}: {dotted}: ")
    assert len(errors) == len(expected_paths), errors
    assert "sk-do-not-leak" not in "\n".join(errors)


def test_config_error_str_is_one_error_per_line() -> None:
    exc = ConfigError(["a: b: c", "a: d: e"])
    assert exc.errors == ["a: b: c", "a: d: e"]
    assert str(exc) == "a: b: c\na: d: e"


# ---------------------------------------------------------------------------------------------
# Environment: check_environment() and api_key()


def azure(**auth: object) -> GatewayConfig:
    return parse_config({"realtime": {"url": AZURE_URL, "auth": auth}})


def test_check_environment_reports_a_missing_variable() -> None:
    assert check_environment(azure(), {}) == [
        "realtime.auth.api_key_env: environment variable AZURE_OPENAI_API_KEY is not set"
    ]


def test_check_environment_names_the_configured_variable() -> None:
    problems = check_environment(azure(api_key_env="PBX_GPT_KEY"), {"AZURE_OPENAI_API_KEY": KEY})
    assert problems == ["realtime.auth.api_key_env: environment variable PBX_GPT_KEY is not set"]


def test_check_environment_reports_an_empty_variable_without_its_value() -> None:
    problems = check_environment(azure(), {"AZURE_OPENAI_API_KEY": "  \n"})
    assert len(problems) == 1 and "AZURE_OPENAI_API_KEY" in problems[0]


def test_check_environment_is_silent_when_set_and_never_shows_the_value() -> None:
    cfg = azure()
    assert check_environment(cfg, {"AZURE_OPENAI_API_KEY": KEY}) == []
    for env in ({}, {"AZURE_OPENAI_API_KEY": ""}, {"OTHER": KEY}):
        assert KEY not in "\n".join(check_environment(cfg, env))


@pytest.mark.parametrize(
    "cfg",
    [
        parse_config({}),  # embedded: no key needed
        parse_config({"realtime": {"url": AZURE_URL, "auth": {"method": "entra"}}}),
        parse_config({"realtime": {"url": "ws://127.0.0.1:9000", "auth": {"method": "none"}}}),
    ],
    ids=["embedded", "entra", "none"],
)
def test_check_environment_needs_no_key_without_api_key_auth(cfg: GatewayConfig) -> None:
    assert check_environment(cfg, {}) == []
    assert api_key(cfg, {"AZURE_OPENAI_API_KEY": KEY}) is None


def test_api_key_reads_the_named_variable() -> None:
    assert api_key(azure(), {"AZURE_OPENAI_API_KEY": KEY}) == KEY
    assert api_key(azure(api_key_env="PBX_GPT_KEY"), {"PBX_GPT_KEY": KEY + "\n"}) == KEY
    assert api_key(azure(api_key_env="PBX_GPT_KEY"), {"AZURE_OPENAI_API_KEY": KEY}) is None
    assert api_key(azure(), {}) is None


def test_secret_never_appears_in_validation_error_text() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as info:
        GatewayConfig.model_validate({"realtime": {"auth": {"api_key": "sk-hidden-value"}}})
    assert "sk-hidden-value" not in str(info.value)


def test_yaml_boolean_where_a_number_belongs(tmp_path: Path) -> None:
    path = write(tmp_path, "sip:\n  port: yes\n")
    line = only(file_errors(path), f"{path}: sip.port: ")
    assert "expected a number" in line


def test_unknown_key_not_mistaken_for_a_secret() -> None:
    line = only(errors_of({"agent": {"max_tokens": 200}}), "x.yaml: agent.max_tokens: ")
    assert SECRETS_MESSAGE not in line and "did you mean 'max_output_tokens'" in line
    line = only(errors_of({"agent": {"reply_tokens": 200}}), "x.yaml: agent.reply_tokens: ")
    assert SECRETS_MESSAGE not in line and "instructions" in line


@pytest.mark.parametrize(
    ("registrar", "transport", "address"),
    [
        ("pbx.example.com", "udp", ("pbx.example.com", 5060)),
        ("pbx.example.com", "tls", ("pbx.example.com", 5061)),
        ("pbx.example.com:5071", "tls", ("pbx.example.com", 5071)),
        ("[2001:db8::1]", "tls", ("2001:db8::1", 5061)),
        ("[2001:db8::1]:5062", "tls", ("2001:db8::1", 5062)),
        ("192.0.2.7", "tls", ("192.0.2.7", 5061)),
    ],
)
def test_a_registrar_without_a_port_is_reached_on_the_transports_port(
    registrar: str, transport: str, address: tuple[str, int]
) -> None:
    """5060 over UDP, 5061 over TLS (RFC 3261 §19.1.2), a written port kept."""
    register = {"registrar": registrar, "user": "100", "password_env": "PW"}
    cfg = SipRegisterConfig.model_validate({**register, "transport": transport})
    assert cfg.registrar_address == address
