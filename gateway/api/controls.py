"""What a route of the control API may ask of the calls: one Protocol, so the HTTP shell knows
nothing of SIP or media, and its tests can stand it on a real gateway."""

from __future__ import annotations

from typing import Any, Literal, Protocol

from .requests import PlaceCallRequest

SayMode = Literal["speak", "instruct"]


class CallControls(Protocol):
    """The calls in progress, by the gateway's call id. Each method raises
    :class:`~gateway.api.problems.Problem` (404 unknown call, 409 not possible now)."""

    def calls(self) -> list[dict[str, Any]]: ...

    def call(self, call_id: str) -> dict[str, Any]: ...

    def hang_up(self, call_id: str) -> None: ...

    async def transfer(
        self, call_id: str, target: str, mode: str = "blind", summary: str = ""
    ) -> str: ...

    def say(self, call_id: str, text: str, mode: SayMode) -> None: ...

    def send_keys(self, call_id: str, digits: str) -> None: ...

    def place_call(self, request: PlaceCallRequest) -> tuple[str, str]: ...
