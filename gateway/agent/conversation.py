"""The embedded agent's conversation: items in order, bounded, with their audio (sans-I/O)."""

from __future__ import annotations

import base64
import binascii
import copy
import math
from typing import Any

import numpy as np

from .audio import decode_item_audio
from .schema import InvalidRequest, check_item, missing, need_dict, new_id

__all__ = ["MAX_ITEMS", "Conversation"]

MAX_ITEMS = 1000  # conversation items remembered per session


class Conversation:
    """Items by id and in order; the assistant items' audio length; the latest user audio.

    The oldest items are forgotten past ``MAX_ITEMS``, as the service's context is bounded.
    """

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}
        self.order: list[str] = []
        self.audio_ms: dict[str, float] = {}  # assistant item -> ms of audio generated
        self.user_audio: tuple[str, np.ndarray] | None = None  # latest user audio item

    @property
    def last(self) -> str | None:
        return self.order[-1] if self.order else None

    def previous_of(self, item_id: str) -> str | None:
        idx = self.order.index(item_id) if item_id in self.order else 0
        return self.order[idx - 1] if idx > 0 else None

    def add(self, item: dict[str, Any], previous: str | None) -> None:
        item_id = item["id"]
        self.items[item_id] = item
        if previous is None or previous == self.last:
            self.order.append(item_id)
        elif previous == "root":
            self.order.insert(0, item_id)
        else:
            self.order.insert(self.order.index(previous) + 1, item_id)
        while len(self.order) > MAX_ITEMS:
            old = self.order.pop(0)
            self.items.pop(old, None)
            self.audio_ms.pop(old, None)

    def add_user_audio(self, item_id: str, audio: np.ndarray) -> tuple[dict[str, Any], str | None]:
        """A committed caller turn; returns the new item and the item before it."""
        previous = self.last
        item = {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "role": "user",
            "status": "completed",
            "content": [{"type": "input_audio", "transcript": None}],
        }
        self.add(item, previous)
        self.user_audio = (item_id, audio)
        return item, previous

    def create(self, event: dict[str, Any], fmt_type: str) -> tuple[dict[str, Any], str | None]:
        """``conversation.item.create``: checks, adds; returns the item and the one before it."""
        if "item" not in event:
            raise missing("item")
        item = copy.deepcopy(need_dict(event["item"], "item"))
        check_item(item)
        previous = event.get("previous_item_id")
        if previous is not None and previous != "root" and previous not in self.items:
            raise InvalidRequest(
                f"Previous item with id '{previous}' not found.", param="previous_item_id"
            )
        item_id = item.get("id") or new_id("item")
        if not isinstance(item_id, str) or item_id in self.items:
            raise InvalidRequest(f"Item with id '{item_id}' already exists.", param="item.id")
        user = item["type"] == "message" and item["role"] == "user"
        audio = _item_audio(item, fmt_type) if user else None
        item["id"] = item_id
        item["object"] = "realtime.item"
        item["status"] = "completed"
        for part in item.get("content") or []:
            part.pop("audio", None)  # audio bytes are never echoed back
            if part.get("type") == "input_audio":
                part.setdefault("transcript", None)
        previous_out = previous if previous is not None else self.last
        self.add(item, previous)
        if audio is not None and audio.size:
            self.user_audio = (item_id, audio)
        return item, previous_out

    def need(self, event: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """The item an event's ``item_id`` names, or the service's refusal."""
        item_id = event.get("item_id")
        if not isinstance(item_id, str):
            raise missing("item_id")
        item = self.items.get(item_id)
        if item is None:
            raise InvalidRequest(
                f"Conversation item with id '{item_id}' does not exist.",
                param="item_id",
                code="item_not_found",
            )
        return item_id, item

    def delete(self, item_id: str) -> None:
        del self.items[item_id]
        self.order.remove(item_id)
        self.audio_ms.pop(item_id, None)
        if self.user_audio is not None and self.user_audio[0] == item_id:
            self.user_audio = None

    def truncate(self, event: dict[str, Any]) -> dict[str, Any]:
        """``conversation.item.truncate``: checks, cuts; returns ``conversation.item.truncated``."""
        item_id, item = self.need(event)
        content_index = event.get("content_index")
        audio_end_ms = event.get("audio_end_ms")
        for name, value in (("content_index", content_index), ("audio_end_ms", audio_end_ms)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise InvalidRequest(
                    f"Invalid '{name}': expected a non-negative integer, but got {value!r}.",
                    param=name,
                    code="invalid_type" if not isinstance(value, int) else "invalid_value",
                )
        assert isinstance(audio_end_ms, int)
        _check_truncatable(item_id, item, self.audio_ms, content_index)
        duration = self.audio_ms[item_id]
        if audio_end_ms > math.ceil(duration):
            raise InvalidRequest(
                f"Audio content of {duration:.0f}ms is already shorter than {audio_end_ms}ms "
                f"(item '{item_id}').",
                param="audio_end_ms",
            )
        self.audio_ms[item_id] = float(audio_end_ms)
        for part in item.get("content") or []:
            if part.get("type") == "output_audio":
                part["transcript"] = ""  # the server drops the text the caller did not hear
        return {
            "type": "conversation.item.truncated",
            "item_id": item_id,
            "content_index": content_index,
            "audio_end_ms": audio_end_ms,
        }

    def release(self) -> None:
        self.user_audio = None


def _check_truncatable(
    item_id: str, item: dict[str, Any], audio_ms: dict[str, float], content_index: Any
) -> None:
    if item.get("type") != "message" or item.get("role") != "assistant":
        kind = (
            f"a {item.get('role')} message" if item.get("type") == "message" else item.get("type")
        )
        raise InvalidRequest(
            f"Only assistant messages can be truncated; item '{item_id}' is {kind}.",
            param="item_id",
        )
    if item_id not in audio_ms:
        raise InvalidRequest(f"Item '{item_id}' has no audio content to truncate.", param="item_id")
    if content_index != 0:
        raise InvalidRequest(
            f"Invalid 'content_index': item '{item_id}' has one content part (index 0).",
            param="content_index",
        )


def _item_audio(item: dict[str, Any], fmt_type: str) -> np.ndarray | None:
    """The first ``input_audio`` part's audio as 24 kHz int16, in the session's input format."""
    for part in item.get("content") or []:
        audio = part.get("audio") if isinstance(part, dict) else None
        if part.get("type") == "input_audio" and isinstance(audio, str):
            try:
                data = base64.b64decode(audio, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise InvalidRequest(
                    "Invalid 'item.content.audio'. Expected base64-encoded audio bytes.",
                    param="item.content.audio",
                ) from exc
            return decode_item_audio(data, fmt_type)
    return None
