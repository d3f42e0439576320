"""The `media` section: the RTP port range, the codecs, strict RTP, SRTP, timeouts."""

from typing import Annotated, Literal

from pydantic import BeforeValidator, ConfigDict, Field, ValidationInfo, field_validator

from .fields import Float, Int, NetworkEntry, _choice, _Model, _unique_nonempty

_SRTP_SUITES = Literal[
    "AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32", "AEAD_AES_128_GCM", "AEAD_AES_256_GCM"
]


def _srtp_mode(value: object) -> object:
    """YAML 1.1 reads a bare ``off`` as false: take it as the word it was."""
    if value is False:
        return "off"
    if isinstance(value, str):
        norm = value.strip().lower()
        if norm in ("off", "optional", "required"):
            return norm
    raise ValueError(f"{value!r} is not accepted; use off, optional or required")


class MediaConfig(_Model):
    """RTP media: the UDP port range and the codecs."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    rtp_port_min: Int = Field(
        10000,
        ge=1024,
        le=65535,
        description="Lowest local UDP port used for RTP audio (1024-65535). Open "
        "rtp_port_min-rtp_port_max in the firewall. Default 10000.",
    )
    rtp_port_max: Int = Field(
        20000,
        ge=1024,
        le=65535,
        description="Highest local UDP port used for RTP audio (1024-65535, greater than "
        "rtp_port_min). Default 20000.",
    )
    codecs: Annotated[
        list[
            Annotated[
                Literal["PCMU", "PCMA", "G722", "opus"],
                _choice("PCMU", "PCMA", "G722", "opus", upper=True, aliases={"OPUS": "opus"}),
            ]
        ],
        _unique_nonempty("codec"),
    ] = Field(
        default_factory=lambda: ["PCMU", "PCMA"],
        description="Codecs the gateway accepts, in its order of preference (the first of "
        "them that an offer names is taken, whatever the offer's order; names are "
        "case-insensitive): PCMU (G.711 mu-law, North America/Japan), PCMA (G.711 A-law, most "
        "other countries), G722 (HD voice: 16 kHz audio, payload type 9, RFC 3551) and opus "
        "(HD voice: 24 kHz here, opus/48000/2 with fmtp maxplaybackrate, useinbandfec and "
        "minptime honoured, RFC 7587; needs libopus). G.722 and Opus calls talk PCM16 to the "
        "model whatever realtime.audio_format says (only G.711 can pass through); "
        "telephone-event is answered beside them on their RTP clock (8000 for G.722, 48000 "
        "for Opus). For HD voice list them first, e.g. [opus, G722, PCMU, PCMA]. A call "
        "offering none of them is rejected with 488. Default [PCMU, PCMA].",
    )
    rtp_timeout_s: Float = Field(
        30.0,
        ge=0,
        description="Hang up (BYE, end reason rtp_timeout) when no RTP has come from the "
        "caller for this many seconds, like Asterisk's rtptimeout: the PBX or the network "
        "lost the call without a BYE. Suspended while the caller holds the call (sendonly or "
        "inactive), counted again from the resume. 0 turns it off. Default 30.",
    )
    hold_timeout_s: Float = Field(
        3600.0,
        gt=0,
        le=86400,
        description="Hang up (BYE, end reason hold_timeout) when the caller has kept the call "
        "on hold (sendonly, inactive or c=0.0.0.0) for this many seconds without resuming: "
        "a held call keeps its call slot and its Realtime session, and the RTP timeout does "
        "not run while it is held. A resume starts the count again at the next hold. More "
        "than 0, at most 86400. Default 3600 (1 hour).",
    )
    strict_rtp: bool = Field(
        True,
        description="Hear RTP only from the caller, like Asterisk's strictrtp: packets from the "
        "address and port in the caller's SDP are taken at once; any other source (a NAT "
        "that rewrote the port) only after rtp_learn_packets consecutive valid RTP packets "
        "(one SSRC, sequence numbers in a row, the negotiated audio or telephone-event "
        "payload type), and only when the source heard so far has sent nothing for 1 s (or "
        "never sent). Everything else is dropped and counted (rtp.stats foreign_source, "
        "metric sipgw_rtp_packets_total kind foreign_source), and our audio goes to the "
        "accepted source only. false = the old symmetric latching: "
        "the first valid RTP packet from any address takes the call's media, which anyone "
        "who can reach the RTP port can race. Junk never latches either way. Default true.",
    )
    rtp_learn_packets: Int = Field(
        4,
        ge=2,
        le=50,
        description="With strict_rtp: how many consecutive valid RTP packets (20 ms each, "
        "dropped while they count) a source other than the SDP's address must send before "
        "the call hears it and sends to it (2-50). Default 4, Asterisk's probation.",
    )
    allow_to: list[NetworkEntry] | None = Field(
        None,
        description="Networks the gateway may send RTP to. The c= address of a caller's SDP "
        "(in the INVITE, a re-INVITE or the ACK's late answer) must lie in one of them, else "
        "the offer gets 488 Not Acceptable Here (a re-INVITE's leaves the call as it was, a "
        "late answer ends the call): an admitted peer cannot aim a call's 50 packets a "
        "second at a third party. A source that strict RTP learned from its own packets is "
        "not checked. Default none = the networks of sip.allow_from; list the trunk's media "
        "servers here (CIDR) when they are elsewhere, 0.0.0.0/0 and ::/0 for anywhere.",
    )
    srtp: Annotated[
        Literal["off", "optional", "required"],
        BeforeValidator(_srtp_mode),
    ] = Field(
        "optional",
        description="SRTP with keys in the SDP (SDES, RFC 4568). off: an RTP/SAVP offer gets "
        "488, calls are plain RTP. optional: an RTP/SAVP offer with a=crypto is answered with "
        "SRTP, a plain RTP/AVP offer with plain RTP; our own offers (INVITE without SDP) are "
        "plain. required: a plain RTP/AVP offer gets 488, and our own offers are RTP/SAVP. "
        "Within a call a re-INVITE cannot turn SRTP on or off (488, the call goes on as it "
        "was); one with a new a=crypto key re-keys both directions. Packets failing "
        "authentication or replayed are dropped and counted (rtp.stats srtp_auth_failures, "
        "srtp_replayed; metric sipgw_rtp_packets_total kinds srtp_auth_failed, "
        "srtp_replayed). Default optional.",
    )
    srtp_suites: Annotated[
        list[Annotated[Literal[_SRTP_SUITES], _choice(*_SRTP_SUITES.__args__, upper=True)]],
        _unique_nonempty("crypto suite"),
    ] = Field(
        default_factory=lambda: [
            "AES_CM_128_HMAC_SHA1_80",
            "AEAD_AES_256_GCM",
            "AEAD_AES_128_GCM",
            "AES_CM_128_HMAC_SHA1_32",
        ],
        description="SRTP crypto suites the gateway accepts, in its order of preference "
        "(the first one an offer names is taken, whatever the offer's order): "
        "AES_CM_128_HMAC_SHA1_80, AES_CM_128_HMAC_SHA1_32, AEAD_AES_128_GCM, "
        "AEAD_AES_256_GCM (RFC 7714; used only where the libsrtp build has them). An offer "
        "naming none of them gets 488. Default [AES_CM_128_HMAC_SHA1_80, AEAD_AES_256_GCM, "
        "AEAD_AES_128_GCM, AES_CM_128_HMAC_SHA1_32].",
    )
    srtp_over_insecure_signalling: bool = Field(
        False,
        description="Take (and send) SRTP keys over SIP that is not TLS (UDP, TCP). The keys "
        "travel in the SDP, so anyone who can read unencrypted signalling can decrypt the "
        "call: by default an RTP/SAVP offer over UDP or TCP gets 488 and a log line "
        "(call.rejected, reason 'SRTP keys offered over unencrypted signalling'). true only "
        "where the signalling path is private (a VPN, a test). Default false.",
    )
    playback_buffer_s: Float = Field(
        120.0,
        ge=1,
        le=3600,
        description="Most model audio, in seconds, one call holds ahead of what the caller "
        "has heard. The service sends answers faster than real time; audio beyond this is "
        "dropped (log playback.overflow, metric sipgw_playback_dropped_seconds_total), which "
        "bounds memory per call (16 KB per second held). Default 120 (a 4096-token answer "
        "is about 200 s, played while it arrives).",
    )

    @field_validator("rtp_port_max", mode="after")
    @classmethod
    def _range_holds_two_ports(cls, value: int, info: ValidationInfo) -> int:
        low = info.data.get("rtp_port_min")
        if low is not None and value <= low:
            raise ValueError(
                f"must be greater than media.rtp_port_min ({low}): the range must hold at "
                "least 2 ports"
            )
        return value
