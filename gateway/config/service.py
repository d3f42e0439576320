"""The `service` section: how a stop (SIGTERM) treats the calls in progress."""

from pydantic import ConfigDict, Field

from .fields import Float, _Model


class ServiceConfig(_Model):
    """Running as a service: how a stop (SIGTERM) treats the calls in progress."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    drain_timeout_s: Float = Field(
        60.0,
        ge=0,
        le=3600,
        description="On SIGTERM (systemctl stop/restart) the gateway stops taking calls (503 "
        "to INVITE and OPTIONS) and lets the calls in progress finish for at most this many "
        "seconds, then hangs them up with BYE and exits (0 to 3600; 0 = hang up at once). "
        "A second SIGTERM or Ctrl-C hangs up at once. Default 60.",
    )
