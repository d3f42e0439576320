"""The building blocks of every config section: the `_Model` base (unknown keys are errors,
an empty section means its defaults), typed fields (Int, Float, NetworkEntry) and validators.

The validators raise ValueError with a message written for the reader of the config file;
`errors._format_errors` puts the file name and dotted path in front.
"""

import ipaddress
import re
import types
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    PlainSerializer,
    PlainValidator,
    model_validator,
)


def _kind(value: object) -> str:
    """Name a YAML value's type the way a config file author sees it."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"{str(value).lower()} (YAML reads unquoted yes/no/on/off as true/false)"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _one_of(options: Sequence[str]) -> str:
    quoted = [str(o) for o in options]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


def _choice(
    *options: str, upper: bool = False, aliases: Mapping[str, str] | None = None
) -> BeforeValidator:
    """Accept one of ``options`` case-insensitively, normalised to lower (or upper) case."""

    def check(value: object) -> object:
        if not isinstance(value, str):
            raise ValueError(f"expected {_one_of(options)}, got {_kind(value)}")
        norm = value.strip().upper() if upper else value.strip().lower()
        norm = (aliases or {}).get(norm, norm)
        if norm not in options:
            raise ValueError(f"{value!r} is not accepted; use {_one_of(options)}")
        return norm

    return BeforeValidator(check)


def _unique_nonempty(what: str) -> AfterValidator:
    def check(items: list[Any]) -> list[Any]:
        if not items:
            raise ValueError(f"must list at least one {what}")
        seen: set[Any] = set()
        for item in items:
            if item in seen:
                raise ValueError(f"{item!r} is listed twice")
            seen.add(item)
        return items

    return AfterValidator(check)


def _optional(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Run ``check`` on a value unless it is None (null = not set)."""
    return lambda value: None if value is None else check(value)


def _number(value: object) -> object:
    """Refuse true/false where a number belongs (pydantic would read true as 1)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {_kind(value)}")
    return value


Int = Annotated[int, BeforeValidator(_number)]


Float = Annotated[float, BeforeValidator(_number)]


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected text, got {_kind(value)}")
    return value


def _nonblank(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("must not be empty")
    return value


def _parse_ip(value: object) -> str:
    text = _text(value).strip().removeprefix("[").removesuffix("]")
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ValueError(
            f"{value!r} is not an IP address; use 0.0.0.0 (every IPv4 interface), "
            ":: (every IPv6 interface) or one address of this host"
        ) from None


_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)\Z")


def _parse_host(value: object) -> str:
    text = _text(value).strip().removeprefix("[").removesuffix("]")
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        name = text.removesuffix(".")
        labels = name.split(".")
        if (
            0 < len(name) <= 253
            and all(_HOST_LABEL.match(label) for label in labels)
            and not labels[-1].isdigit()
        ):
            return text
        raise ValueError(f"{value!r} is neither an IP address nor a valid host name") from None
    if ip.is_unspecified:
        raise ValueError(
            f"{text} cannot be advertised (peers cannot send to it); give the address the "
            "PBX should send to, or leave this empty to use the address of the socket"
        )
    return str(ip)


def _parse_hostport(value: object) -> str:
    """host or host:port (IPv6 in brackets); the port defaults to 5060."""
    text = _text(value).strip()
    host, port = text, "5060"
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            port = rest.removeprefix(":")
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{text!r}: the port must be a number from 1 to 65535")
    host = _parse_host(host)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _parse_network(value: object) -> IPNetwork:
    if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return value
    if not isinstance(value, str):
        raise ValueError(
            f"expected a network such as 192.168.1.0/24 or 2001:db8::/32, got {_kind(value)}"
        )
    try:
        return ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise ValueError(
            f"{value!r} is not an IP address or a network in CIDR form "
            "(such as 192.168.1.0/24, 10.1.2.3 or 2001:db8::/32)"
        ) from None


NetworkEntry = Annotated[
    IPNetwork,
    PlainValidator(_parse_network, json_schema_input_type=str),
    PlainSerializer(str, return_type=str),
]


def _is_model(annotation: object) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _keys(model: type[BaseModel]) -> dict[str, Any]:
    """The model's fields by the key written in YAML (the alias, where there is one)."""
    return {field.alias or name: field for name, field in model.model_fields.items()}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    @model_validator(mode="before")
    @classmethod
    def _empty_section_means_defaults(cls, data: Any) -> Any:
        """``sip:`` with nothing under it (YAML null) means "all defaults", like ``sip: {}``."""
        if isinstance(data, dict):
            empty = [
                key
                for key, value in data.items()
                if value is None and key in _keys(cls) and _is_model(_keys(cls)[key].annotation)
            ]
            if empty:
                data = {k: v for k, v in data.items() if k not in empty}
        return data


def _unwrap(annotation: Any) -> Any:
    """Strip Annotated[...] and Optional[...] down to the type that validates the value."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            members = [a for a in get_args(annotation) if a is not type(None)]
            if len(members) != 1:
                return annotation
            annotation = members[0]
        else:
            return annotation


# A transfer or redirect target that comes from outside the config (the control API, a hook's
# answer) or from it (failover) is checked before it reaches a header: a sip: or sips: URI,
# printable, without the characters that would end the header or the name-addr it goes into.
MAX_TARGET_CHARS = 256
_SIP_TARGET = re.compile(r"sips?:[!-~]+\Z", re.IGNORECASE)  # printable ASCII, no space
_TARGET_FORBIDDEN = frozenset('<>"\\')


def sip_target(text: str) -> str:
    """`text` if it is a usable sip:/sips: target URI, else ValueError saying why."""
    if len(text) > MAX_TARGET_CHARS:
        raise ValueError(f"a target is at most {MAX_TARGET_CHARS} characters")
    if not _SIP_TARGET.match(text) or _TARGET_FORBIDDEN & set(text):
        raise ValueError(
            "a target is a sip: or sips: URI such as sip:600@pbx.example, with no spaces, "
            'control characters, <, >, " or \\'
        )
    return text
