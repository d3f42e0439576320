"""The `sip` section: listener, transports, TLS, admission, digest auth, registration, session
timers.
"""

import ipaddress
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from .fields import (
    Float,
    Int,
    IPNetwork,
    NetworkEntry,
    _choice,
    _Model,
    _nonblank,
    _optional,
    _parse_host,
    _parse_hostport,
    _parse_ip,
    _text,
    _unique_nonempty,
)
from .outbound import SipOutboundConfig
from .secrets import _parse_env_name


class SipUserConfig(_Model):
    """One account a PBX may authenticate its INVITEs with."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    username: Annotated[str, BeforeValidator(_text), AfterValidator(_nonblank)] = Field(
        description="User name the PBX sends in its digest credentials.",
    )
    password_env: Annotated[str, BeforeValidator(_parse_env_name)] = Field(
        description="NAME of the environment variable that holds this user's password (never "
        "the password itself).",
    )


class SipAuthConfig(_Model):
    """Digest authentication of inbound INVITEs (RFC 3261 §22), for PBXs that send credentials."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    realm: Annotated[str, BeforeValidator(_text), AfterValidator(_nonblank)] = Field(
        "sip-realtime-gateway",
        description="Realm in the 401 challenge; the PBX's credentials must name it. Default "
        "sip-realtime-gateway.",
    )
    users: list[SipUserConfig] = Field(
        min_length=1,
        description="Accounts allowed to place calls. An INVITE without valid credentials "
        "gets 401 Unauthorized with one challenge per algorithm (qop=auth); credentials "
        "without qop, with a nonce count already used, or made for another Request-URI "
        "(400) are refused.",
    )
    algorithms: Annotated[
        list[Annotated[Literal["SHA-256", "MD5"], _choice("SHA-256", "MD5", upper=True)]],
        _unique_nonempty("algorithm"),
    ] = Field(
        default_factory=lambda: ["MD5", "SHA-256"],
        description="Digest algorithms offered in the 401, one WWW-Authenticate line each, "
        "in order of preference (RFC 8760): MD5 and SHA-256. A caller that answers only the "
        "first challenge and knows only MD5 fails on a SHA-256 one (seen with baresip 1.0 of "
        "Debian 12, SIPp 3.6, SIPVicious 0.3.8; PBXs whose SIP stack predates RFC 8760 may "
        "do the same), so MD5 comes first by default and an upgrade breaks no trunk; put "
        "SHA-256 first once every PBX that calls supports it. Default [MD5, SHA-256].",
    )
    max_failures: Int = Field(
        10,
        ge=0,
        le=10_000,
        description="Failed authentication attempts (wrong password, unknown user, replayed "
        "or malformed credentials; not the first INVITE without credentials) from one "
        "source IP address within failure_window_s after which that source is blocked: "
        "its INVITEs get 403 Forbidden, without a challenge, for block_s (log "
        "sip.auth_blocked, metric sipgw_auth_blocks_total). Only credentials built on a "
        "challenge sent to that address count, so a spoofed source cannot get a PBX "
        "blocked. 0 = never block. Default 10.",
    )
    failure_window_s: Float = Field(
        60.0,
        gt=0,
        le=86_400,
        description="Seconds over which failed attempts from one source are counted "
        "towards max_failures. Default 60.",
    )
    block_s: Float = Field(
        600.0,
        gt=0,
        le=86_400 * 7,
        description="Seconds a source stays blocked once it reached max_failures. Default 600.",
    )


def _names_port(text: str) -> bool:
    """host:port, [v6]:port: a port written; host, v6, [v6]: none."""
    if text.startswith("["):
        return "]:" in text
    return text.count(":") == 1


class SipRegisterConfig(_Model):
    """Registration mode: the gateway registers to a PBX as an extension and takes its calls."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    registrar: Annotated[str, BeforeValidator(_parse_hostport)] = Field(
        description="Registrar (the PBX) as host or host:port, e.g. pbx.example.com:5060; "
        "without a port, 5060 (5061 with transport tls). REGISTER goes there over UDP (or "
        "TLS, see transport); the PBX's address must also be in sip.allow_from.",
    )
    user: Annotated[str, BeforeValidator(_text), AfterValidator(_nonblank)] = Field(
        description="Extension to register, the user part of the address of record "
        "sip:USER@DOMAIN.",
    )
    domain: Annotated[str | None, BeforeValidator(_optional(_parse_host))] = Field(
        None,
        description="Domain of the address of record. Default: the registrar's host.",
    )
    auth_user: Annotated[str | None, BeforeValidator(_optional(_text))] = Field(
        None,
        description="User name for digest authentication, when it differs from user. "
        "Default: user.",
    )
    password_env: Annotated[str, BeforeValidator(_parse_env_name)] = Field(
        description="NAME of the environment variable that holds the extension's password.",
    )
    transport: Annotated[Literal["udp", "tls"], _choice("udp", "tls")] = Field(
        "udp",
        description="How REGISTER travels: udp, or tls (needs tls in sip.transports): a "
        "connection the gateway opens to the registrar and keeps, the registrar's "
        "certificate checked against its host name (sip.tls.ca_file, else the system's "
        "CAs), and the PBX's calls coming over it. Default udp.",
    )
    expires: Int = Field(
        300,
        ge=30,
        le=86400,
        description="Registration interval asked for, in seconds (30-86400); refreshed at 90 % "
        "of what the registrar grants. Default 300.",
    )

    @model_validator(mode="before")
    @classmethod
    def _tls_port(cls, data: object) -> object:
        """A registrar named without a port is reached on 5061 over TLS (RFC 3261 §19.1.2)."""
        if isinstance(data, dict) and data.get("transport") == "tls":
            registrar = data.get("registrar")
            if isinstance(registrar, str) and not _names_port(registrar.strip()):
                data = {**data, "registrar": f"{registrar.strip()}:5061"}
        return data

    @property
    def registrar_address(self) -> tuple[str, int]:
        host, _, port = self.registrar.rpartition(":")
        return host.strip("[]"), int(port)


class SipTcpConfig(_Model):
    """Limits of the SIP over TCP listener: what one peer, or many, may hold open."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    max_connections: Int = Field(
        1024,
        ge=1,
        description="Most TCP connections open at once; a connection beyond it is closed at "
        "accept. Default 1024.",
    )
    max_connections_per_source: Int = Field(
        64,
        ge=1,
        description="Most TCP connections open at once from one IP address. Default 64.",
    )
    idle_timeout_s: float = Field(
        120.0,
        gt=0,
        description="A connection that carries no call and sends nothing this long is closed "
        "(seconds). Default 120.",
    )
    message_timeout_s: float = Field(
        10.0,
        gt=0,
        description="Once a message has begun, all of it (headers and body) must arrive within "
        "this many seconds, or the connection is closed (a slowloris peer). Default 10.",
    )
    max_send_buffer_kib: Int = Field(
        256,
        ge=16,
        description="Most data queued toward a peer that does not read it (KiB); beyond it "
        "the connection is closed. Default 256.",
    )


def _file_path(value: object) -> Path:
    text = _nonblank(_text(value))
    if "\0" in text:
        raise ValueError("a path cannot contain a NUL character")
    return Path(text).expanduser()


class SipTlsConfig(_Model):
    """SIP over TLS (when tls is in sip.transports): the certificate, and whom to trust."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    port: Int = Field(
        5061,
        ge=1,
        le=65535,
        description="SIP over TLS listening port (1-65535). Default 5061.",
    )
    cert_file: Annotated[Path | None, BeforeValidator(_optional(_file_path))] = Field(
        None,
        description="PEM file with the gateway's certificate (and its intermediates). Required "
        "when tls is in sip.transports. Re-read on SIGHUP.",
    )
    key_file: Annotated[Path | None, BeforeValidator(_optional(_file_path))] = Field(
        None,
        description="PEM file with the private key of cert_file (unencrypted; keep it readable "
        "by the gateway's user only). Required when tls is in sip.transports. Re-read on "
        "SIGHUP; a key that does not match the certificate is refused and the old pair kept.",
    )
    ca_file: Annotated[Path | None, BeforeValidator(_optional(_file_path))] = Field(
        None,
        description="PEM file with the certificate authorities a peer's certificate must chain "
        "to: a client's when verify_peer is true, and always that of a peer the gateway "
        "connects to (the registrar with sip.register.transport tls, a caller whose "
        "connection is gone when the gateway sends BYE or REFER), whose certificate must "
        "also match the name it is reached by. Default none: the system's CAs for the "
        "connections the gateway opens.",
    )
    verify_peer: bool = Field(
        False,
        description="Mutual TLS: a peer must present a certificate that chains to ca_file (and "
        "matches allowed_names when set); else the connection is closed and logged "
        "(sip.tls_refused). Default false: any peer sip.allow_from admits may connect.",
    )
    allowed_names: list[Annotated[str, BeforeValidator(_text), AfterValidator(_nonblank)]] = Field(
        default_factory=list,
        description="With verify_peer: names a peer certificate must carry, as a DNS or "
        "IP subjectAltName or as its subject CN (exact match, case-insensitive; no "
        "wildcards). Default [] = any certificate from ca_file.",
    )
    handshake_timeout_s: Float = Field(
        10.0,
        gt=0,
        le=600,
        description="A TLS handshake not complete within this many seconds is aborted and "
        "the connection closed. Default 10.",
    )

    @model_validator(mode="after")
    def _peer_check_needs_ca(self) -> "SipTlsConfig":
        if self.verify_peer and self.ca_file is None:
            raise ValueError("verify_peer: true needs ca_file (the CAs peers must chain to)")
        if self.allowed_names and not self.verify_peer:
            raise ValueError("allowed_names is only checked with verify_peer: true")
        return self


class SipSessionTimersConfig(_Model):
    """Session timers (RFC 4028): a call whose far end has vanished is ended, and a trunk
    that expects refreshes gets them, so long calls are not dropped after 15-30 minutes."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    enabled: bool = Field(
        True,
        description="Take part in session timers when the caller asks for them (Session-Expires "
        "or Supported: timer in its INVITE): refresh, or watch the caller's refreshes and hang "
        "up (BYE, end reason session_timer_expired) when they stop; on the calls we place "
        "(sip.outbound), ask for them (Supported: timer, Session-Expires expires_s, Min-SE) and "
        "do what the callee's 2xx says. false = ignore them, never answer 422, and place calls "
        "without them. Default true.",
    )
    expires_s: Int = Field(
        1800,
        ge=1,
        description="The session interval we ask for when the caller supports timers but names "
        "no interval, and in the INVITEs of the calls we place (seconds; a callee's 422 raises "
        "it to its Min-SE, once); the caller's Session-Expires, when given, is used as it is. "
        "Default 1800.",
    )
    min_se_s: Int = Field(
        90,
        ge=1,
        description="The shortest session interval we accept (seconds): an INVITE asking for "
        "less is answered 422 Session Interval Too Small with this value in Min-SE. RFC 4028 "
        "says at least 90; lower values are for tests. Default 90.",
    )
    refresher: Annotated[Literal["uac", "uas"], _choice("uac", "uas")] = Field(
        "uas",
        description="Who refreshes when the caller leaves it to us: uas = the gateway (UPDATE "
        "when the caller allows it, else a re-INVITE with the same SDP, every half interval), "
        "uac = the caller (the gateway hangs up when its refreshes stop). A caller that names "
        "the refresher is obeyed. Default uas.",
    )

    @model_validator(mode="after")
    def _expires_at_least_min(self) -> "SipSessionTimersConfig":
        if self.expires_s < self.min_se_s:
            raise ValueError(
                f"expires_s ({self.expires_s}) must be at least min_se_s ({self.min_se_s})"
            )
        return self


class SipConfig(_Model):
    """SIP signalling: where the gateway listens and whom it accepts calls from."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    bind: Annotated[str, BeforeValidator(_parse_ip)] = Field(
        "0.0.0.0",
        description="Local IP address the SIP listener binds to: 0.0.0.0 = every IPv4 "
        "interface, :: = every IPv6 interface, or one address of this host. Default 0.0.0.0.",
    )
    port: Int = Field(
        5060,
        ge=1,
        le=65535,
        description="SIP listening port of udp and tcp (1-65535; tls listens on "
        "sip.tls.port). Default 5060.",
    )
    transports: Annotated[
        list[Annotated[Literal["udp", "tcp", "tls"], _choice("udp", "tcp", "tls")]],
        _unique_nonempty("transport"),
    ] = Field(
        default_factory=lambda: ["udp"],
        description="SIP transports to listen on: udp, tcp, tls, or several of them (udp and "
        "tcp on sip.port, tls on sip.tls.port). Default [udp].",
    )
    advertise_address: Annotated[str | None, BeforeValidator(_optional(_parse_host))] = Field(
        None,
        description="IP address or host name written in Contact, Via and the SDP c= line, "
        "e.g. the public address when the gateway sits behind NAT. Default none = the "
        "address of the local socket that carries the call.",
    )
    allow_from: list[NetworkEntry] = Field(
        default_factory=lambda: [
            ipaddress.ip_network(n)
            for n in ("127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
        ],
        description="Source addresses or networks (CIDR) allowed to send SIP requests, checked "
        "on the packet's source before it is parsed: a request from anywhere else is answered "
        "403 Forbidden once (never retransmitted, no call record) or dropped, as "
        "sip.reject_unknown says, and a TCP connection from there is closed at accept. Use "
        "0.0.0.0/0 and ::/0 to accept any source. Default: loopback and the private ranges "
        "10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16.",
    )
    reject_unknown: Annotated[Literal["respond", "drop"], _choice("respond", "drop")] = Field(
        "respond",
        description="What a source outside sip.allow_from gets: respond = one 403 Forbidden; "
        "drop = nothing at all, so scanners cannot tell a SIP server listens. Default respond.",
    )
    user_agent: Annotated[str, BeforeValidator(_text)] = Field(
        "sip-realtime-gateway",
        max_length=100,
        pattern=r"^[\x20-\x7e]*$",
        description="The User-Agent header of every message the gateway sends; empty = no "
        "header. No version number by default, so a scanner learns nothing it could look up. "
        "Default sip-realtime-gateway.",
    )
    tcp: SipTcpConfig = Field(
        default_factory=SipTcpConfig,
        description="Limits of the TCP listener (when tcp is in sip.transports); they apply "
        "to the TLS listener too.",
    )
    tls: SipTlsConfig = Field(
        default_factory=SipTlsConfig,
        description="SIP over TLS (when tls is in sip.transports): port, certificate, mutual TLS.",
    )
    session_timers: SipSessionTimersConfig = Field(
        default_factory=SipSessionTimersConfig,
        description="Session timers (RFC 4028): refreshes, and a BYE when the caller's stop.",
    )
    max_calls: Int = Field(
        100,
        ge=1,
        description="Maximum number of simultaneous calls; INVITEs beyond it get 503 Service "
        "Unavailable with Retry-After, and OPTIONS answers 503 so a dispatcher sends calls "
        "elsewhere. Default 100.",
    )
    auth: SipAuthConfig | None = Field(
        None,
        description="Digest authentication of inbound INVITEs. Default none: calls are "
        "admitted by sip.allow_from alone.",
    )
    registration: SipRegisterConfig | None = Field(
        None,
        alias="register",
        description="Register to a PBX as an extension and take the calls it sends there. "
        "Default none: the PBX routes calls to this gateway's address (trunk mode).",
    )
    outbound: SipOutboundConfig | None = Field(
        None,
        description="Calls the gateway places (POST /v1/calls, python -m gateway call): the "
        "trunk, its credentials, and the numbers and caller IDs allowed. Default none: no "
        "outbound calls.",
    )

    @model_validator(mode="after")
    def _tls_has_certificate(self) -> "SipConfig":
        if "tls" in self.transports and (self.tls.cert_file is None or self.tls.key_file is None):
            raise ValueError("tls in sip.transports needs sip.tls.cert_file and sip.tls.key_file")
        registration = self.registration
        if registration is not None and registration.transport not in self.transports:
            raise ValueError(
                f"sip.register.transport {registration.transport} needs "
                f"{registration.transport} in sip.transports"
            )
        outbound = self.outbound
        if outbound is not None and outbound.transport not in self.transports:
            raise ValueError(
                f"sip.outbound.transport {outbound.transport} needs "
                f"{outbound.transport} in sip.transports"
            )
        return self

    @field_validator("allow_from", mode="after")
    @classmethod
    def _allow_from_not_empty(cls, value: list[IPNetwork]) -> list[IPNetwork]:
        if not value:
            raise ValueError(
                "an empty list would refuse every call; list the PBX addresses or networks "
                "(use 0.0.0.0/0 and ::/0 to accept calls from anywhere)"
            )
        return value
