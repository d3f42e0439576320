"""The SIP listeners as sip.transports asks for them, and their TLS contexts (read at start,
read again on SIGHUP: new connections get the new certificate, those open keep theirs)."""

from __future__ import annotations

import ssl
from collections.abc import Callable

import structlog

from .config import GatewayConfig, SipSessionTimersConfig
from .sip.door import Door
from .sip.session_timer import TimerPolicy
from .sip.tcp import TcpLimits, TcpTransport
from .sip.tls import TlsSettings, TlsSetupError, client_context, server_context
from .sip.tls_transport import TlsTransport
from .sip.transport import Listener
from .sip.udp import UdpTransport

log = structlog.get_logger("gateway")

# What prepare_tls gives: the server and client contexts, an error, or why there are none.
TlsContexts = tuple[ssl.SSLContext, ssl.SSLContext] | TlsSetupError | str


def build_listener(
    kind: str,
    cfg: GatewayConfig,
    door: Door,
    *,
    sip_port: int,
    tls_port: int,
    busy: Callable[[tuple[str, int]], bool],
) -> Listener:
    """The listener of one of sip.transports ("udp", "tcp", "tls"), not started; `busy` says
    whether a TCP source carries a call (its connection is then never closed for idling).
    Raises TlsSetupError when the TLS certificate or key cannot be used."""
    sip = cfg.sip
    local = (sip.bind, sip_port)
    if kind == "udp":
        return UdpTransport(local, door)
    tcp = sip.tcp
    limits = TcpLimits(
        tcp.max_connections,
        tcp.max_connections_per_source,
        tcp.idle_timeout_s,
        tcp.message_timeout_s,
        tcp.max_send_buffer_kib * 1024,
    )
    transport: TcpTransport
    if kind == "tls":
        tls = tls_settings(cfg)
        transport = TlsTransport(
            (sip.bind, tls_port),
            server_context(tls),
            door,
            limits,
            client=client_context(tls),
            allowed_names=tls.allowed_names,
            handshake_timeout_s=tls.handshake_timeout_s,
        )
    else:
        transport = TcpTransport(local, door, limits)
    transport.busy = busy
    return transport


def tls_settings(cfg: GatewayConfig) -> TlsSettings:
    tls = cfg.sip.tls
    if tls.cert_file is None or tls.key_file is None:  # the config's validator prevents it
        raise TlsSetupError("sip.tls.cert_file and sip.tls.key_file are required")
    return TlsSettings(
        tls.cert_file,
        tls.key_file,
        tls.ca_file,
        tls.verify_peer,
        tuple(tls.allowed_names),
        tls.handshake_timeout_s,
    )


def prepare_tls(listener: TlsTransport | None, new: GatewayConfig) -> TlsContexts:
    """The TLS contexts of a reloaded config, from the files as they are now (reading them
    takes milliseconds: the reload runs this in a thread). An error says why not."""
    if listener is None or "tls" not in new.sip.transports:
        return "not listening on TLS"
    tls = tls_settings(new)
    try:
        return server_context(tls), client_context(tls)
    except TlsSetupError as exc:
        return exc


def reload_tls(listener: TlsTransport | None, new: GatewayConfig, contexts: TlsContexts) -> bool:
    """SIGHUP: the listener takes the new contexts and peer checks for new connections. A
    pair that cannot be used is refused and the old context kept. True when it took them."""
    if listener is None or isinstance(contexts, str):
        return False
    if isinstance(contexts, TlsSetupError):
        log.error("sip.tls_reload_failed", error=str(contexts), kept="the running certificate")
        return False
    tls = tls_settings(new)
    listener.context, listener.client = contexts
    listener.allowed_names = tls.allowed_names
    listener.handshake_timeout_s = tls.handshake_timeout_s
    log.info("sip.tls_reloaded", cert_file=str(tls.cert_file))
    return True


def session_policy(cfg: SipSessionTimersConfig) -> TimerPolicy | None:
    """sip.session_timers as the UAS takes it; None when they are off."""
    return TimerPolicy(cfg.expires_s, cfg.min_se_s, cfg.refresher) if cfg.enabled else None
