"""SIP over TLS without sockets: the config's rules, the name check, the TLS Contact."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from gateway.config import ConfigError, parse_config
from gateway.sip.tls import (
    TlsSettings,
    TlsSetupError,
    client_context,
    name_refusal,
    reconnect_target,
    server_context,
)
from gateway.sip.transport import with_transport


def errors_of(data: object) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data, "x.yaml")
    return "\n".join(info.value.errors)


def test_tls_config_defaults_and_rules() -> None:
    files = {"cert_file": "/c.pem", "key_file": "/k.pem"}
    cfg = parse_config({"sip": {"transports": ["udp", "TLS"], "tls": files}}, "x")
    assert cfg.sip.transports == ["udp", "tls"]
    tls = cfg.sip.tls
    assert (tls.port, tls.verify_peer, tls.allowed_names, tls.handshake_timeout_s) == (
        5061, False, [], 10.0,
    )  # fmt: skip
    assert tls.cert_file == Path("/c.pem")
    assert "needs sip.tls.cert_file" in errors_of({"sip": {"transports": ["tls"]}})
    assert "needs ca_file" in errors_of(
        {"sip": {"transports": ["tls"], "tls": {**files, "verify_peer": True}}}
    )
    assert "only checked with verify_peer" in errors_of(
        {"sip": {"transports": ["tls"], "tls": {**files, "allowed_names": ["pbx"]}}}
    )
    assert "handshake_timeout_s" in errors_of({"sip": {"tls": {"handshake_timeout_s": 0}}})


PEER = {
    "subject": ((("commonName", "pbx.example.com"),),),
    "subjectAltName": (("DNS", "sbc.example.com"), ("IP Address", "192.0.2.7"),
                       ("email", "a@example.com")),
}  # fmt: skip


def test_allowed_names_match_san_or_cn_exactly() -> None:
    assert name_refusal(PEER, []) is None
    assert name_refusal(PEER, ["PBX.example.com"]) is None
    assert name_refusal(PEER, ["sbc.example.com"]) is None
    assert name_refusal(PEER, ["192.0.2.7"]) is None
    assert name_refusal(PEER, ["a@example.com"]) is not None  # email SANs are no names
    assert name_refusal(PEER, ["example.com"]) is not None  # no suffix match
    assert name_refusal(PEER, ["*.example.com"]) is not None  # no wildcards
    assert name_refusal(None, ["pbx.example.com"]) == "peer certificate has no name"


def test_a_contact_names_its_transport() -> None:
    assert with_transport("<sip:127.0.0.1:5061>", "tls") == "<sip:127.0.0.1:5061;transport=tls>"
    assert with_transport("<sip:[::1]:5061>", "tls") == "<sip:[::1]:5061;transport=tls>"
    assert with_transport("<sip:h:5061;transport=TLS>", "tls") == "<sip:h:5061;transport=TLS>"
    assert with_transport("<sips:h:5061>", "tls") == "<sips:h:5061>"
    assert with_transport("<sip:h:5060>", "tcp") == "<sip:h:5060;transport=tcp>"


def test_unusable_files_are_refused_with_a_reason(tmp_path: Path) -> None:
    missing = TlsSettings(tmp_path / "none.pem", tmp_path / "none.key")
    with pytest.raises(TlsSetupError, match="No such file"):
        server_context(missing)
    junk = tmp_path / "junk.pem"
    junk.write_text("not PEM\n")
    with pytest.raises(TlsSetupError, match=r"junk\.pem"):
        server_context(TlsSettings(junk, junk))


def test_contexts_are_tls12_or_later_and_verify_what_they_should(tmp_path: Path) -> None:
    from tests.integration.tls_certs import TestCa

    ca = TestCa(tmp_path)
    leaf = ca.issue("gw", "gw.test", ips=("127.0.0.1",))
    plain = server_context(TlsSettings(leaf.cert, leaf.key))
    assert plain.minimum_version == ssl.TLSVersion.TLSv1_2
    assert plain.verify_mode == ssl.CERT_NONE
    assert plain.options & ssl.OP_NO_RENEGOTIATION
    mutual = server_context(TlsSettings(leaf.cert, leaf.key, ca.pem, verify_peer=True))
    assert mutual.verify_mode == ssl.CERT_REQUIRED
    client = client_context(TlsSettings(leaf.cert, leaf.key, ca.pem))
    assert client.check_hostname and client.verify_mode == ssl.CERT_REQUIRED
    assert client.minimum_version == ssl.TLSVersion.TLSv1_2
    other = ca.issue("other", "other.test")
    with pytest.raises(TlsSetupError, match="KEY_VALUES_MISMATCH"):
        server_context(TlsSettings(leaf.cert, other.key))


def test_reconnect_target_is_the_peers_ip_and_the_contacts_name() -> None:
    target = reconnect_target("sip:pbx@pbx.example.com:5071;transport=tls", "192.0.2.7")
    assert target == (("192.0.2.7", 5071), "pbx.example.com")
    assert reconnect_target("sips:pbx@[2001:db8::1]", "2001:db8::1") == (
        ("2001:db8::1", 5061), "2001:db8::1",
    )  # fmt: skip
    for bad in ("tel:+15551234", "sip:pbx@bad_host!:5061", "sip:pbx@h:0", "<<<"):
        with pytest.raises(ValueError):
            reconnect_target(bad, "192.0.2.7")
