"""The control API's config: no open API off loopback, and a token worth the name."""

import pytest

from gateway.config import ConfigError, api_token, check_environment, parse_config


def test_off_by_default() -> None:
    assert parse_config({}).api is None


def test_loopback_may_go_without_a_token() -> None:
    cfg = parse_config({"api": {}})
    assert cfg.api is not None and (cfg.api.bind, cfg.api.port) == ("127.0.0.1", 8080)
    assert api_token(cfg, {}) is None and check_environment(cfg, {}) == []


@pytest.mark.parametrize("bind", ["0.0.0.0", "10.1.2.3", "::"])
def test_any_other_address_needs_a_token(bind: str) -> None:
    with pytest.raises(ConfigError, match="set token_env"):
        parse_config({"api": {"bind": bind}})
    cfg = parse_config({"api": {"bind": bind, "token_env": "GATEWAY_API_TOKEN"}})
    assert cfg.api is not None and cfg.api.bind == bind


def test_the_token_must_be_set_and_long_enough() -> None:
    cfg = parse_config({"api": {"token_env": "GATEWAY_API_TOKEN"}})
    short = "api.token_env: environment variable GATEWAY_API_TOKEN is not set or shorter than 16"
    assert check_environment(cfg, {})[0].startswith(short)
    assert check_environment(cfg, {"GATEWAY_API_TOKEN": "short"})[0].startswith(short)
    token = "t" * 16
    assert check_environment(cfg, {"GATEWAY_API_TOKEN": token}) == []
    assert api_token(cfg, {"GATEWAY_API_TOKEN": token}) == token


def test_a_pasted_token_is_refused_where_a_variable_name_belongs() -> None:
    with pytest.raises(ConfigError, match="not the name of an environment variable"):
        parse_config({"api": {"token_env": "sk-abcdefabcdefabcdefabcdefabcdef"}})
