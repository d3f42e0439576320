"""`python -m gateway call TO --profile P`: ask a running gateway's control API to place an
outbound call (POST /v1/calls), and say plainly what to do when the API is not there."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from .config import GatewayConfig, api_token

REQUEST_TIMEOUT_S = 10.0


def api_url(cfg: GatewayConfig) -> str | None:
    """Where the running gateway's API listens (a wildcard bind is reached on loopback)."""
    api = cfg.api
    if api is None:
        return None
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(api.bind, api.bind)
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{api.port}"


def call(cfg: GatewayConfig, config_path: str, body: dict[str, Any]) -> int:
    """Place the call; 0 once the gateway took it (its outcome comes as events)."""
    url = api_url(cfg)
    if url is None or cfg.api is None:
        print(
            f"call: the control API is off in {config_path}. Add an api: section (bind, port, "
            "token_env; see config/gateway.yaml) and sip.outbound, then restart the gateway.",
            file=sys.stderr,
        )
        return 2
    token = api_token(cfg)
    if cfg.api.token_env is not None and token is None:
        print(
            f"call: set the environment variable {cfg.api.token_env} to the API's token "
            "(api.token_env), as the running gateway has it.",
            file=sys.stderr,
        )
        return 2
    try:
        status, answer = asyncio.run(_post(f"{url}/v1/calls", body, token))
    except (OSError, TimeoutError) as exc:
        print(
            f"call: no gateway answers at {url} ({exc or type(exc).__name__}): is it running "
            f"with {config_path}?",
            file=sys.stderr,
        )
        return 1
    if status != 202:
        detail = answer.get("detail", answer) if isinstance(answer, dict) else answer
        print(f"call: refused ({status}): {detail}", file=sys.stderr)
        return 1
    print(
        f"call {answer['id']} placed to {body['to']} (SIP Call-ID {answer['sip_call_id']}); "
        "its outcome comes as events and log lines: call.answered or call.failed, call.ended"
    )
    return 0


async def _post(url: str, body: dict[str, Any], token: str | None) -> tuple[int, Any]:
    import aiohttp

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async with session.post(url, json=body, headers=headers) as response:
            data = await response.read()
            try:
                return response.status, json.loads(data)
            except ValueError:
                return response.status, data.decode(errors="replace")[:500]
