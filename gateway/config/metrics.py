"""The `metrics` section: Prometheus metrics and health checks over HTTP."""

from typing import Annotated

from pydantic import BeforeValidator, ConfigDict, Field

from .fields import Int, _Model, _parse_ip


class MetricsConfig(_Model):
    """Prometheus metrics and health checks over HTTP."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    enabled: bool = Field(
        True,
        description="Serve /metrics (Prometheus), /healthz (alive) and /readyz (ready for "
        "calls; 503 while starting or draining) over HTTP. Default true.",
    )
    bind: Annotated[str, BeforeValidator(_parse_ip)] = Field(
        "127.0.0.1",
        description="Local IP address of the metrics HTTP listener: 127.0.0.1 (this host "
        "only), 0.0.0.0 (every IPv4 interface) or one address of this host. There is no "
        "authentication: expose it only to your monitoring network. Default 127.0.0.1.",
    )
    port: Int = Field(
        9464,
        ge=1,
        le=65535,
        description="TCP port of the metrics HTTP listener (1-65535); give every gateway "
        "instance on a host its own. Default 9464.",
    )
    debug_state: bool = Field(
        False,
        description="Also serve /debug/state: counts of what the process holds (calls, tasks, "
        "file descriptors, memory, garbage-collector pauses), for leak hunting and soak runs, "
        "answered to loopback clients only. Off (404) unless set: it tells a visitor about "
        "the process and costs a full garbage collection with ?gc=1. Default false.",
    )
