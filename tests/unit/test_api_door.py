"""The API's door (gateway/api/door.py): refusals counted per source, a source shut out.
Through real sockets: tests/integration/test_control_api.py."""

from __future__ import annotations

import json
from unittest import mock

from aiohttp.test_utils import make_mocked_request
from prometheus_client import CollectorRegistry, Counter

from gateway.api.door import ApiDoor
from gateway.config import GatewayConfig
from gateway.sip.blocklist import AuthBlocklist


def _request(source: str) -> mock.Mock:
    request = make_mocked_request("GET", "/v1/calls")
    return mock.Mock(wraps=request, remote=source, path=request.path)


def test_the_third_refusal_shuts_the_source_out_until_block_s_has_passed() -> None:
    now = [100.0]
    blocks = Counter("blocks", "test", registry=CollectorRegistry())
    door = ApiDoor(AuthBlocklist(3, 60.0, 90.0, clock=lambda: now[0]), blocks)
    guesser, other = _request("192.0.2.7"), _request("192.0.2.8")
    for _ in range(2):
        door.refused(guesser, "api.unauthorized")
        assert door.shut(guesser) is None
    door.refused(guesser, "api.unauthorized")
    shut = door.shut(guesser)
    assert shut is not None and shut.status == 429
    assert shut.headers["Retry-After"] == "90"
    assert json.loads(shut.body)["status"] == 429
    assert door.shut(other) is None and blocks._value.get() == 1
    now[0] += 89.0
    assert door.shut(guesser) is not None
    now[0] += 2.0
    assert door.shut(guesser) is None  # served its time


def test_refusals_spread_wider_than_the_window_never_shut_anyone_out() -> None:
    now = [0.0]
    door = ApiDoor(AuthBlocklist(3, 60.0, 90.0, clock=lambda: now[0]))
    guesser = _request("192.0.2.7")
    for _ in range(10):
        door.refused(guesser, "api.unauthorized")
        now[0] += 31.0  # two in any 60 s
        assert door.shut(guesser) is None


def test_never_logs_but_shuts_no_one_out_and_the_config_defaults_to_ten_a_minute() -> None:
    door = ApiDoor.never()
    guesser = _request("192.0.2.7")
    for _ in range(50):
        door.refused(guesser, "api.unauthorized")
    assert door.shut(guesser) is None
    api = GatewayConfig.model_validate({"api": {}}).api
    assert api is not None
    assert (api.max_failures, api.failure_window_s, api.block_s) == (10, 60.0, 600.0)
