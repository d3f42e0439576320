"""The `service` section: how a stop (SIGTERM) treats the calls in progress, and the event
loop the process runs on."""

from typing import Literal

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
    event_loop: Literal["asyncio", "uvloop"] = Field(
        "asyncio",
        description="The process's event loop. asyncio (default): the standard library's; the "
        "pacer wakes on a timerfd at each deadline. uvloop (pip install uvloop, or the "
        "package's [uvloop] extra): libuv's loop in C, measured 5-10 % less CPU at 200 pcm16 "
        "calls (README, Capacity), but its clock and timers have millisecond steps, so the "
        "pacer falls back to them and the media callbacks' polls (timerfd needs the "
        "standard loop's clock).",
    )
