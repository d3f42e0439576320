"""Realtime and agent settings: checked at check-config time against what the service accepts.

The accepted values come from the official ``openai`` SDK's models: the config's literals are
compared with the SDK's, so an SDK update that adds or drops a value shows up here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import pytest
from openai.types.beta.realtime import session_update_event as beta_session
from openai.types.realtime import audio_transcription, noise_reduction_type
from openai.types.realtime import realtime_audio_config_output as ga_output
from openai.types.realtime import realtime_audio_input_turn_detection as ga_turns
from openai.types.realtime import realtime_session_create_request as ga_session

from gateway.config import (
    MAX_OUTPUT_TOKENS,
    PREVIEW_TRANSCRIPTION_MODELS,
    PREVIEW_VOICES,
    TRANSCRIPTION_MODELS,
    VOICES,
    SemanticVad,
    check_environment,
    parse_config,
)
from tests.unit.test_config import errors_of, only

REPO = Path(__file__).resolve().parents[2]
AZURE_URL = "wss://res.openai.azure.com/openai/v1/realtime"
PREVIEW_URL = "wss://res.openai.azure.com/openai/realtime"
OPENAI_URL = "wss://api.openai.com/v1/realtime"
PREVIEW = {"url": PREVIEW_URL, "protocol": "preview", "api_version": "2025-04-01-preview"}


def literals(annotation: Any) -> set[Any]:
    """Every Literal value inside an annotation (through Optional/Union)."""
    if get_origin(annotation) is Literal:
        return set(get_args(annotation))
    if get_origin(annotation) is Union or isinstance(annotation, type(int | None)):
        return set().union(*(literals(a) for a in get_args(annotation)))
    return set()


# --- the accepted values are the SDK's -------------------------------------------------------


def test_voices_are_the_sdks() -> None:
    ga = literals(ga_output.RealtimeAudioConfigOutput.model_fields["voice"].annotation)
    beta = literals(beta_session.Session.model_fields["voice"].annotation)
    assert set(VOICES) == ga
    assert set(PREVIEW_VOICES) == beta


def test_transcription_models_are_the_sdks() -> None:
    ga = literals(audio_transcription.AudioTranscription.model_fields["model"].annotation)
    assert set(TRANSCRIPTION_MODELS) == ga
    assert set(PREVIEW_TRANSCRIPTION_MODELS) <= ga


def test_eagerness_noise_reduction_and_max_tokens_are_the_sdks() -> None:
    semantic = ga_turns.SemanticVad.model_fields["eagerness"].annotation
    assert literals(SemanticVad.model_fields["eagerness"].annotation) == literals(semantic)
    assert {"near_field", "far_field"} == set(get_args(noise_reduction_type.NoiseReductionType))
    tokens = ga_session.RealtimeSessionCreateRequest.model_fields["max_output_tokens"].annotation
    assert literals(tokens) == {"inf"}
    assert MAX_OUTPUT_TOKENS == 4096  # the SDK's docstring: "an integer between 1 and 4096"


# --- new agent settings ----------------------------------------------------------------------


def test_noise_reduction_and_max_output_tokens() -> None:
    agent = parse_config({"agent": {"noise_reduction": "Near_Field", "max_output_tokens": 500}})
    assert (agent.agent.noise_reduction, agent.agent.max_output_tokens) == ("near_field", 500)
    defaults = parse_config({}).agent
    assert (defaults.noise_reduction, defaults.max_output_tokens) == (None, "inf")
    assert parse_config({"agent": {"max_output_tokens": "INF"}}).agent.max_output_tokens == "inf"


@pytest.mark.parametrize("value", [0, 4097, -1, 1.5, True, "lots"])
def test_max_output_tokens_out_of_range(value: object) -> None:
    line = only(
        errors_of({"agent": {"max_output_tokens": value}}), "x.yaml: agent.max_output_tokens: "
    )
    assert "1 to 4096" in line


def test_noise_reduction_must_be_known() -> None:
    line = only(
        errors_of({"agent": {"noise_reduction": "studio"}}), "x.yaml: agent.noise_reduction: "
    )
    assert "near_field or far_field" in line


def test_transcription_model_must_be_known() -> None:
    errors = errors_of({"agent": {"input_transcription": {"model": "gpt-4o-transcrbe"}}})
    line = only(errors, "x.yaml: agent.input_transcription.model: ")
    assert "gpt-4o-transcribe" in line and "whisper-1" in line


# --- the preview protocol carries less ---------------------------------------------------------


def test_preview_defaults_to_a_preview_voice() -> None:
    cfg = parse_config({"realtime": PREVIEW})
    assert cfg.agent.voice == "alloy"
    assert (
        parse_config({"realtime": PREVIEW, "agent": {"voice": "shimmer"}}).agent.voice == "shimmer"
    )


def test_preview_checks_every_profile() -> None:
    errors = errors_of(
        {
            "realtime": PREVIEW,
            "profiles": {"vip": {"voice": "marin"}, "plain": {}},
            "routes": [{"match": {"dialed": "^1$"}, "profile": "vip"}],
        }
    )
    assert errors == [
        "x.yaml: profiles.vip.voice: marin exists only with realtime.protocol: ga; the preview "
        "protocol's voices are alloy, ash, ballad, coral, echo, sage, shimmer or verse"
    ]
    cfg = parse_config({"realtime": PREVIEW, "profiles": {"plain": {}}})
    assert cfg.profiles["plain"].voice == "alloy"


def test_embedded_agent_speaks_ga_only() -> None:
    errors = errors_of({"realtime": {"protocol": "preview", "api_version": "2025-04-01-preview"}})
    assert "speaks ga" in only(errors, "x.yaml: realtime.protocol: ")


def test_preview_refuses_what_only_ga_has() -> None:
    errors = errors_of(
        {
            "realtime": PREVIEW,
            "agent": {
                "voice": "cedar",
                "turn_detection": {"type": "server_vad", "idle_timeout_ms": 8000},
                "input_transcription": {"model": "gpt-realtime-whisper"},
            },
        }
    )
    assert "only with realtime.protocol: ga" in only(errors, "x.yaml: agent.voice: ")
    only(errors, "x.yaml: agent.turn_detection.idle_timeout_ms: ")
    assert "whisper-1" in only(errors, "x.yaml: agent.input_transcription.model: ")
    assert len(errors) == 3


# --- OpenAI's own endpoint ------------------------------------------------------------------


def test_openai_takes_a_bearer_key() -> None:
    cfg = parse_config(
        {
            "realtime": {
                "url": OPENAI_URL,
                "auth": {"method": "bearer", "api_key_env": "OPENAI_API_KEY"},
            }
        }
    )
    assert cfg.realtime.auth.method == "bearer"
    assert check_environment(cfg, {}) == [
        "realtime.auth.api_key_env: environment variable OPENAI_API_KEY is not set"
    ]
    assert check_environment(cfg, {"OPENAI_API_KEY": "sk-test"}) == []


def test_openai_with_azure_api_key_header_is_refused() -> None:
    line = only(errors_of({"realtime": {"url": OPENAI_URL}}), "x.yaml: realtime.auth.method: ")
    assert "method: bearer" in line


def test_openai_with_preview_is_refused() -> None:
    errors = errors_of(
        {
            "realtime": {
                "url": OPENAI_URL,
                "protocol": "preview",
                "api_version": "2025-04-01-preview",
                "auth": {"method": "bearer"},
            }
        }
    )
    assert "speaks ga" in only(errors, "x.yaml: realtime.protocol: ")


def test_rollover_margin_must_fit_in_the_session() -> None:
    errors = errors_of({"realtime": {"max_session_s": 60, "rollover_margin_s": 60}})
    assert "must be less than" in only(errors, "x.yaml: realtime.rollover_margin_s: ")
    cfg = parse_config({"realtime": {"max_session_s": 3600, "rollover_margin_s": 90}})
    assert (cfg.realtime.max_session_s, cfg.realtime.rollover_margin_s) == (3600, 90)


# --- the shipped examples pass check-config -------------------------------------------------


@pytest.mark.parametrize(
    "name,env",
    [
        ("gateway.yaml", {}),
        ("azure.example.yaml", {"AZURE_OPENAI_API_KEY": "test-key"}),
        ("azure-entra.example.yaml", {}),
        ("azure-preview.example.yaml", {"AZURE_OPENAI_API_KEY": "test-key"}),
        ("openai.example.yaml", {"OPENAI_API_KEY": "sk-test"}),
    ],
)
def test_example_config_passes_check_config(name: str, env: dict[str, str]) -> None:
    path = REPO / "config" / name
    clean = {k: v for k, v in os.environ.items() if not k.endswith("API_KEY")}
    run = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", "--config", str(path)],
        env={**clean, **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == f"{path}: OK"
    if env:  # and without its key, check-config names the missing variable
        bare = subprocess.run(
            [sys.executable, "-m", "gateway", "check-config", "--config", str(path)],
            env=clean,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert bare.returncode == 1
        assert f"environment variable {next(iter(env))} is not set" in bare.stderr


# --- a secret never over ws:// unless allowed -------------------------------------------------


@pytest.mark.parametrize(
    ("method", "secret"), [("api_key", "API key"), ("bearer", "API key"), ("entra", "Entra ID")]
)
def test_a_key_or_token_over_ws_is_refused_unless_allowed(method: str, secret: str) -> None:
    for host in ("res.openai.azure.com", "127.0.0.1"):  # loopback too: any local user may listen
        realtime = {"url": f"ws://{host}/openai/v1/realtime", "auth": {"method": method}}
        line = only(errors_of({"realtime": realtime}), "x.yaml: realtime.url: ")
        assert secret in line and "wss://" in line and "allow_insecure_ws: true" in line
        allowed = parse_config({"realtime": {**realtime, "allow_insecure_ws": True}})
        assert allowed.realtime.allow_insecure_ws is True
        secure = {**realtime, "url": f"wss://{host}/openai/v1/realtime"}
        assert parse_config({"realtime": secure}).realtime.allow_insecure_ws is False


def test_ws_without_credentials_needs_no_flag() -> None:
    realtime = {"url": "ws://127.0.0.1:9000/openai/v1/realtime", "auth": {"method": "none"}}
    assert parse_config({"realtime": realtime}).realtime.url.startswith("ws://")
    assert parse_config({}).realtime.embedded  # embedded:echo: no network, no key
