"""The `api` section: the control API that lets your systems follow and act on live calls."""

import ipaddress
from typing import Annotated

from pydantic import BeforeValidator, ConfigDict, Field, model_validator

from .fields import Float, Int, _Model, _parse_ip
from .secrets import _parse_env_name


class ApiConfig(_Model):
    """The control API over HTTP: list calls, hang up, transfer, speak, send keys."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    bind: Annotated[str, BeforeValidator(_parse_ip)] = Field(
        "127.0.0.1",
        description="Local IP address of the API listener: 127.0.0.1 (this host only) or an "
        "address of this host. Any other than loopback needs token_env. Default 127.0.0.1.",
    )
    port: Int = Field(
        8080,
        ge=0,
        le=65535,
        description="TCP port of the API listener (0: any free port, for tests). Default 8080.",
    )
    token_env: Annotated[str | None, BeforeValidator(_parse_env_name)] = Field(
        None,
        description="Name of the environment variable holding the bearer token every request "
        "must carry (Authorization: Bearer TOKEN; at least 16 characters). Required unless "
        "bind is a loopback address; default none = no token, loopback only.",
    )

    max_failures: Int = Field(
        10,
        ge=0,
        le=10_000,
        description="Refused requests (a missing or wrong bearer token, a wrong console "
        "cookie, a failed console login) from one source IP address within failure_window_s "
        "after which that source is shut out: every request from it gets 429 Too Many "
        "Requests, the right token or not, for block_s (log api.source_blocked, metric "
        "sipgw_api_blocks_total); what it sends then is neither checked nor logged. Bounds "
        "both token guessing and the warnings a stranger can write to the log. 0 = never "
        "block. Default 10.",
    )
    failure_window_s: Float = Field(
        60.0,
        gt=0,
        le=86_400,
        description="Seconds over which refused requests from one source are counted "
        "towards max_failures. Default 60.",
    )
    block_s: Float = Field(
        600.0,
        gt=0,
        le=86_400 * 7,
        description="Seconds a source stays shut out once it reached max_failures. Default 600.",
    )

    console: bool = Field(
        True,
        description="Serve the live console at /console/ (behind the same token): calls as "
        "they happen, listen-in, the history of ended calls (docs/console.md). Default true.",
    )

    @model_validator(mode="after")
    def _token_off_loopback(self) -> "ApiConfig":
        if self.token_env is None and not ipaddress.ip_address(self.bind).is_loopback:
            raise ValueError(
                f"bind: {self.bind} is reachable from other hosts; set token_env (the name of "
                "the variable holding the API's bearer token), or bind 127.0.0.1"
            )
        return self
