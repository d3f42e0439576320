"""SIGHUP: what a reloaded config changes at once, and what waits for a restart.

New calls get the reloaded agent, profiles and routes; calls in progress keep theirs. The TLS
certificate is read again for new connections (listeners.py). Everything else needs a restart,
and the reload says which sections.
"""

from __future__ import annotations

from .config import GatewayConfig
from .listeners import TlsContexts, reload_tls
from .sip.tls_transport import TlsTransport

RELOADABLE = ("agent", "profiles", "routes")  # what a reload (SIGHUP) applies to new calls


def apply_config(
    cfg: GatewayConfig, new: GatewayConfig, listener: TlsTransport | None, tls: TlsContexts
) -> tuple[GatewayConfig, list[str], list[str]]:
    """The running config with what can be applied of `new`, the sections applied and the
    changed sections that need a restart. `listener` takes the TLS contexts `tls`."""
    changed = [name for name in type(new).model_fields if getattr(new, name) != getattr(cfg, name)]
    applied = [name for name in changed if name in RELOADABLE]
    cfg = cfg.model_copy(update={name: getattr(new, name) for name in applied})
    needs_restart = [name for name in changed if name not in RELOADABLE]
    same_sip = _without_tls(new) == _without_tls(cfg)
    same_port = new.sip.tls.port == cfg.sip.tls.port
    if reload_tls(listener, new, tls):
        # The port stays what the listener is bound to until a restart.
        kept = new.sip.tls.model_copy(update={"port": cfg.sip.tls.port})
        cfg = cfg.model_copy(update={"sip": cfg.sip.model_copy(update={"tls": kept})})
        applied.append("sip.tls")
        if "sip" in needs_restart and same_sip and same_port:
            needs_restart.remove("sip")  # only sip.tls changed, and it was applied
    return cfg, applied, needs_restart


def _without_tls(cfg: GatewayConfig) -> object:
    return cfg.sip.model_copy(update={"tls": None})
