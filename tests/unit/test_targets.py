"""Targets from outside the config never carry a header or a second address."""

import pytest

from gateway.config.fields import MAX_TARGET_CHARS, sip_target


@pytest.mark.parametrize(
    "target", ["sip:600@pbx.example", "SIPS:queue@10.0.0.5:5061;transport=tls", "sip:+4930123@h"]
)
def test_a_sip_uri_passes_unchanged(target: str) -> None:
    assert sip_target(target) == target


@pytest.mark.parametrize(
    "target",
    [
        "",
        "tel:+4930123",
        "http://evil.example",
        "sip:a@b\r\nX-Injected: 1",
        "sip:a@b>, <sip:evil@x",
        "sip:a b@c",
        'sip:"a"@b',
        "sip:a@b\x00",
        "sip:",
        "sip:ä@b",
        "sip:" + "a" * MAX_TARGET_CHARS,
    ],
)
def test_anything_else_is_refused(target: str) -> None:
    with pytest.raises(ValueError):
        sip_target(target)
