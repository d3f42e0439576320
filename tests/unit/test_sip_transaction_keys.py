"""Transaction keys of RFC 2543 requests that lack a From or a CSeq (the key is asked for
before any request check, e.g. to absorb a retransmission), and timer G when T2 = T1."""

from __future__ import annotations

from aiosipua import SipRequest

from gateway.sip.transactions import SipTimers, transaction_key

VIA = "Via: SIP/2.0/UDP 10.0.0.1:5070\r\n"


def parse(headers: str) -> SipRequest:
    raw = f"INVITE sip:echo@127.0.0.1 SIP/2.0\r\n{VIA}{headers}Content-Length: 0\r\n\r\n"
    return SipRequest.parse(raw.encode())


def test_an_rfc2543_key_without_from_or_cseq_is_still_a_key() -> None:
    no_from = parse("To: <sip:echo@127.0.0.1>\r\nCall-ID: c1\r\nCSeq: 7 INVITE\r\n")
    assert transaction_key(no_from) == ("2543", "c1", "7", "", "10.0.0.1:5070")
    no_cseq = parse("From: <sip:a@127.0.0.1>;tag=t\r\nCall-ID: c1\r\n")
    assert transaction_key(no_cseq) == ("2543", "c1", "0", "t", "10.0.0.1:5070")


def test_timer_g_never_fires_at_timer_h() -> None:
    """With T2 = T1 the offsets step by T1 and would reach 64*T1 = timer H: that one is not
    a retransmission, the transaction ends there."""
    timers = SipTimers(t1=0.5, t2=0.5)
    offsets = list(timers.retransmit_offsets())
    assert offsets[-1] == 31.5 and timers.h == 32.0
    assert len(offsets) == 63
