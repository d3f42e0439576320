"""A transfer or redirect target that came from outside the config (the control API, a hook's
answer) is checked before it reaches a header: a sip: or sips: URI, printable, without the
characters that would end the header or the name-addr it goes into."""

from __future__ import annotations

import re

MAX_TARGET_CHARS = 256
_TARGET = re.compile(r"sips?:[!-~]+\Z", re.IGNORECASE)  # printable ASCII, no space
_FORBIDDEN = frozenset('<>"\\')


def sip_target(text: str) -> str:
    """`text` if it is a usable sip:/sips: target URI, else ValueError saying why."""
    if len(text) > MAX_TARGET_CHARS:
        raise ValueError(f"a target is at most {MAX_TARGET_CHARS} characters")
    if not _TARGET.match(text) or _FORBIDDEN & set(text):
        raise ValueError(
            "a target is a sip: or sips: URI such as sip:600@pbx.example, with no spaces, "
            'control characters, <, >, " or \\'
        )
    return text
