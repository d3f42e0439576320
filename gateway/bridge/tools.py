"""Functions the model may call: webhooks, hang up, transfer, press keys.

Whatever happens (bad arguments, a slow or failing webhook, a refused transfer) the model
gets a JSON answer it can talk about, and the call goes on: a tool never ends a call by
failing. A transfer is the one tool answered later: it starts once the agent's words have
been heard, and the call's core answers it with the outcome (:func:`transfer_output`).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from ..config import EndCallTool, SendDtmfTool, Tool, TransferTool, WebhookTool
from ..realtime.tool_definitions import tool_name
from ..sip.transfer_context import MAX_SUMMARY_CHARS, sanitise
from .webhook import WebhookClient, WebhookError

MAX_OUTPUT_CHARS = 16_000  # what goes back to the model; a runaway webhook is cut


@dataclass(frozen=True, slots=True)
class ToolCall:
    call_id: str
    name: str
    arguments: str  # JSON text, as the model produced it


class CallControl(Protocol):
    """What tools may do to the call; the bridge implements it."""

    def hang_up_after_playback(self) -> None: ...

    def transfer_after_playback(
        self, call: ToolCall, destination: str, target: str, mode: str = ..., summary: str = ...
    ) -> str | None:
        """Transfer (blind or warm) once the agent's words are heard; a reason when it
        cannot be done."""
        ...

    def send_keys(self, digits: str) -> str:
        """Press keys toward the other side; how they go. ValueError when they cannot."""
        ...


class Tools:
    def __init__(
        self,
        specs: list[Tool],
        call_data: Mapping[str, Any],
        environ: Mapping[str, str] = os.environ,
    ) -> None:
        self._specs = {tool_name(s): s for s in specs}
        self._call_data = dict(call_data)
        self._environ = environ
        self._http = WebhookClient()

    async def run(self, call: ToolCall, control: CallControl) -> str | None:
        """Run one call: the JSON output for function_call_output, or None when the call's
        core gives the output later (a transfer under way)."""
        spec = self._specs.get(call.name)
        if spec is None:
            return _error(f"unknown tool {call.name!r}")
        try:
            arguments = json.loads(call.arguments or "{}")
        except ValueError:
            return _error("the arguments are not valid JSON")
        if not isinstance(arguments, dict):
            return _error("the arguments must be a JSON object")
        match spec:
            case WebhookTool():
                return await self._webhook(spec, arguments)
            case EndCallTool():
                control.hang_up_after_playback()
                return json.dumps({"ok": True, "result": "the call ends after your last words"})
            case TransferTool():
                return ask_transfer(call, spec, arguments, control)
            case SendDtmfTool():
                return press_keys(spec, arguments, control)
        return _error(f"tool {call.name!r} cannot run")

    async def close(self) -> None:
        await self._http.close()

    async def _webhook(self, spec: WebhookTool, arguments: dict[str, Any]) -> str:
        headers = {"Content-Type": "application/json"}
        for header, env in spec.headers_from_env.items():
            value = self._environ.get(env)
            if value is None:
                return _error(f"the gateway is missing environment variable {env}")
            headers[header] = value
        body = {"tool": spec.name, "arguments": arguments, "call": self._call_data}
        try:
            text = await self._http.post(spec, body, headers)
        except WebhookError as exc:
            return _error(str(exc))
        except Exception as exc:  # whatever else breaks, the model hears it and the call goes on
            return _error(f"the webhook failed ({type(exc).__name__})")
        try:
            json.loads(text)
            out = text
        except ValueError:
            out = json.dumps({"result": text}, ensure_ascii=False)
        return out if len(out) <= MAX_OUTPUT_CHARS else _cut(text)


def ask_transfer(
    call: ToolCall, spec: TransferTool, arguments: dict[str, Any], control: CallControl
) -> str | None:
    """Only a configured destination (the model may have been talked into anything): asked
    of the call (None: the output comes with the outcome), else the error for the model."""
    destination = arguments.get("destination")
    target = spec.targets.get(destination) if isinstance(destination, str) else None
    if target is None:
        return _error(f"unknown destination {destination!r}; use one of {sorted(spec.targets)}")
    mode = arguments.get("mode", spec.mode)
    if mode not in ("blind", "warm"):
        return _error("mode must be blind or warm")
    summary = arguments.get("summary", "")
    if not isinstance(summary, str):
        return _error("summary must be text")
    summary = sanitise(summary, MAX_SUMMARY_CHARS)  # it reaches headers and the human's ear
    if mode == "blind" and not summary:  # (the plain call of a plain blind transfer)
        refused = control.transfer_after_playback(call, destination, target)
    else:
        refused = control.transfer_after_playback(call, destination, target, mode, summary)
    return None if refused is None else _error(f"no transfer to {destination}: {refused}")


_KEYS = re.compile(r"[0-9*#A-D]+")


def press_keys(spec: SendDtmfTool, arguments: dict[str, Any], control: CallControl) -> str:
    """Keys the model asked for, checked (it may have been talked into anything): only
    0-9 * # A-D, at most max_digits."""
    digits = arguments.get("digits")
    if not isinstance(digits, str) or not _KEYS.fullmatch(digits.upper()):
        return _error("digits must be a string of 0-9, *, #, A-D")
    if len(digits) > spec.max_digits:
        return _error(f"at most {spec.max_digits} keys at a time")
    try:
        way = control.send_keys(digits.upper())
    except ValueError as exc:
        return _error(f"the keys were not sent: {exc}")
    return json.dumps({"ok": True, "result": f"pressed {digits.upper()}", "via": way})


def transfer_output(destination: str, ok: bool, detail: str) -> str:
    """What the model is told of a transfer's outcome: the truth, which it can talk about."""
    if ok:
        return json.dumps({"ok": True, "result": f"transferred to {destination}"})
    return _error(f"the transfer to {destination} failed: {detail}; the caller is still here")


def _cut(text: str) -> str:
    """An answer too long for the model, cut and still JSON (a JSON document cut mid-way
    would be a riddle for the model): the start of it as text, marked as cut."""
    keep = MAX_OUTPUT_CHARS - 64
    while True:
        out = json.dumps({"truncated": True, "result": text[:keep]}, ensure_ascii=False)
        if len(out) <= MAX_OUTPUT_CHARS:
            return out
        keep -= len(out) - MAX_OUTPUT_CHARS + 64  # escapes made it longer: take less


def _error(message: str) -> str:
    return json.dumps({"ok": False, "error": message})
