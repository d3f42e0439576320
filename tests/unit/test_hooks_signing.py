"""Webhook signatures checked by an independent implementation: the Standard Webhooks
specification's own Python library verifies what gateway.hooks.signing signs."""

import base64
import json
import time

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from gateway.config import check_environment, parse_config
from gateway.hooks.signing import SecretError, Signer, decode_secret, new_message_id

SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()


def test_the_reference_library_accepts_our_signature() -> None:
    body = json.dumps({"type": "call.ended", "data": {"caller": "+4930123"}}).encode()
    headers = Signer(SECRET).headers(new_message_id(), body)
    assert Webhook(SECRET).verify(body, headers) == {
        "type": "call.ended",
        "data": {"caller": "+4930123"},
    }


def test_a_changed_body_or_another_secret_is_refused() -> None:
    body = b'{"action": "accept"}'
    headers = Signer(SECRET).headers(new_message_id(), body)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(b'{"action": "reject"}', headers)
    other = "whsec_" + base64.b64encode(bytes(32)).decode()
    with pytest.raises(WebhookVerificationError):
        Webhook(other).verify(body, headers)


def test_the_secret_may_come_without_its_prefix_and_unpadded() -> None:
    bare = SECRET.removeprefix("whsec_").rstrip("=")
    body = b"{}"
    message_id = new_message_id()
    now = time.time()
    assert Signer(bare).headers(message_id, body, now) == Signer(SECRET).headers(
        message_id, body, now
    )


@pytest.mark.parametrize(
    "secret", ["whsec_not base64!", "whsec_", "whsec_" + base64.b64encode(b"short").decode()]
)
def test_a_malformed_or_short_secret_is_refused_without_echoing_it(secret: str) -> None:
    with pytest.raises(SecretError) as caught:
        decode_secret(secret)
    body = secret.removeprefix("whsec_")
    assert not body or body not in str(caught.value)


def test_the_environment_check_names_a_missing_or_malformed_hook_secret() -> None:
    cfg = parse_config(
        {
            "hooks": {
                "call_incoming": {"url": "http://127.0.0.1:9/in", "secret_env": "HOOK_IN"},
                "events": {"url": "http://127.0.0.1:9/ev", "secret_env": "HOOK_EV"},
            }
        }
    )
    problems = check_environment(cfg, {"HOOK_EV": "whsec_***"})
    assert problems == [
        "hooks.call_incoming.secret_env: environment variable HOOK_IN is not set or empty",
        "hooks.events.secret_env: environment variable HOOK_EV: a webhook secret is whsec_ "
        "followed by base64 (as Standard Webhooks libraries generate it), e.g. whsec_ and 32 "
        "random bytes in base64",
    ]
    assert check_environment(cfg, {"HOOK_IN": SECRET, "HOOK_EV": SECRET}) == []


def test_message_ids_are_unique() -> None:
    assert len({new_message_id() for _ in range(1000)}) == 1000
