"""The INVITE server transaction table (RFC 3261 §17.2.1, RFC 6026) as plain objects.

What the wire tests cannot pin without timing: timer G's schedule, which response a
transaction keeps, how an ACK finds its transaction (branch for 3xx-6xx, Call-ID and CSeq
for a 2xx), RFC 2543 keys, and that removing one transaction leaves the others findable.
"""

from __future__ import annotations

import itertools

from aiosipua import SipRequest, SipResponse

from gateway.sip.transactions import (
    MAX_TRANSACTIONS,
    InviteTransaction,
    InviteTransactions,
    SipTimers,
    TxState,
    transaction_key,
)


def request(
    method: str = "INVITE",
    *,
    branch: str | None = "z9hG4bK-a",
    call_id: str = "c1",
    cseq: int = 1,
    host: str = "10.0.0.1:5070",
    tag: str | None = "t1",
) -> SipRequest:
    params = f";branch={branch}" if branch else ""
    from_tag = f";tag={tag}" if tag else ""
    raw = (
        f"{method} sip:echo@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {host}{params}\r\n"
        f"From: <sip:a@127.0.0.1>{from_tag}\r\nTo: <sip:echo@127.0.0.1>\r\n"
        f"Call-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
    )
    return SipRequest.parse(raw.encode())


def response(status: int) -> SipResponse:
    raw = (
        f"SIP/2.0 {status} X\r\nVia: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK-a\r\n"
        "From: <sip:a@127.0.0.1>;tag=t1\r\nTo: <sip:echo@127.0.0.1>;tag=u\r\n"
        "Call-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    )
    return SipResponse.parse(raw.encode())


def test_default_timers_are_rfc_3261s() -> None:
    timers = SipTimers()
    assert (timers.t1, timers.t2, timers.t4) == (0.5, 4.0, 5.0)
    assert timers.h == 32.0
    assert SipTimers(t1=0.1).h == 6.4


def test_timer_g_doubles_up_to_t2_and_stops_at_timer_h() -> None:
    offsets = list(SipTimers().retransmit_offsets())
    assert offsets[:6] == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5]
    assert offsets[-1] == 31.5  # the last send before 32 s
    assert all(b - a <= 4.0 for a, b in itertools.pairwise(offsets))
    assert len(offsets) == 10
    short = list(SipTimers(t1=1.0, t2=2.0).retransmit_offsets())
    assert short[:4] == [1.0, 3.0, 5.0, 7.0]
    assert short[-1] == 63.0 and 64.0 not in short


def test_record_keeps_the_last_response_until_the_first_final_one() -> None:
    txn = InviteTransaction(("k",), "c1", 1)
    assert not txn.final and txn.response is None
    trying, ringing, ok, late = response(100), response(180), response(200), response(486)
    assert txn.record(trying) is False
    assert txn.response is trying and txn.state is TxState.PROCEEDING
    assert txn.record(ringing) is False
    assert txn.response is ringing
    assert txn.record(ok) is True
    assert txn.state is TxState.ACCEPTED and txn.final
    assert txn.record(late) is False
    assert txn.response is ok  # a final response is never replaced


def test_a_3xx_to_6xx_completes_and_199_does_not() -> None:
    for status, state in (
        (300, TxState.COMPLETED),
        (299, TxState.ACCEPTED),
        (503, TxState.COMPLETED),
    ):
        txn = InviteTransaction(("k",), "c1", 1)
        assert txn.record(response(status)) is True
        assert txn.state is state
    txn = InviteTransaction(("k",), "c1", 1)
    assert txn.record(response(199)) is False
    assert txn.state is TxState.PROCEEDING


def test_keys_use_branch_and_sent_by_or_the_rfc_2543_identity() -> None:
    assert transaction_key(request()) == ("3261", "z9hG4bK-a", "10.0.0.1:5070")
    assert transaction_key(request(host="HOST.example")) == ("3261", "z9hG4bK-a", "host.example:")
    old = transaction_key(request(branch="abc", cseq=7, call_id="Cx", tag="ft"))
    assert old == ("2543", "Cx", "7", "ft", "10.0.0.1:5070")
    assert transaction_key(request(branch=None, tag=None))[3] == ""
    raw = b"INVITE sip:a@b SIP/2.0\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    assert transaction_key(SipRequest.parse(raw)) is None


def test_retransmission_matches_and_another_branch_does_not() -> None:
    table = InviteTransactions()
    txn = table.create(request())
    assert txn is not None and len(table) == 1
    assert (txn.call_id, txn.cseq) == ("c1", 1)
    assert table.match(request()) is txn
    assert table.match(request("CANCEL", cseq=1)) is txn
    assert table.match(request(branch="z9hG4bK-b")) is None
    assert table.match(request(host="10.0.0.2:5070")) is None


def test_a_second_invite_with_the_same_key_replaces_the_first() -> None:
    table = InviteTransactions()
    first = table.create(request())
    second = table.create(request())
    assert second is not first and len(table) == 1
    assert table.match(request()) is second
    assert table.of_call("c1") == [second]


def test_ack_of_a_2xx_found_by_call_id_and_cseq_once_accepted() -> None:
    table = InviteTransactions()
    txn = table.create(request())
    ack = request("ACK", branch="z9hG4bK-other", cseq=1)
    assert table.match_ack(ack) is None  # still proceeding: nothing to ACK
    txn.record(response(200))
    assert table.match_ack(ack) is txn
    txn.state = TxState.CONFIRMED
    assert table.match_ack(ack) is txn
    assert table.match_ack(request("ACK", branch="z9hG4bK-other", cseq=2)) is None
    assert table.match_ack(request("ACK", branch="z9hG4bK-o", call_id="c2")) is None


def test_ack_of_a_3xx_to_6xx_found_by_branch_only() -> None:
    table = InviteTransactions()
    txn = table.create(request())
    txn.record(response(486))
    assert table.match_ack(request("ACK")) is txn
    assert table.match_ack(request("ACK", branch="z9hG4bK-other")) is None


def test_remove_forgets_every_index_and_spares_the_others() -> None:
    table = InviteTransactions()
    a = table.create(request(branch="z9hG4bK-1", cseq=1))
    b = table.create(request(branch="z9hG4bK-2", cseq=2))
    other = table.create(request(branch="z9hG4bK-3", call_id="c2"))
    for txn in (a, b, other):
        txn.record(response(200))
    assert table.of_call("c1") == [a, b]
    table.remove(a)
    assert len(table) == 2
    assert table.match(request(branch="z9hG4bK-1")) is None
    assert table.match_ack(request("ACK", branch="z9hG4bK-x", cseq=1)) is None
    assert table.of_call("c1") == [b]
    assert table.match_ack(request("ACK", branch="z9hG4bK-x", cseq=2)) is b
    table.remove(a)  # twice: harmless
    table.remove(b)
    assert table.of_call("c1") == []
    assert "c1" not in table._by_call
    assert table.all() == [other]


def test_remove_of_a_replaced_transaction_leaves_its_successor() -> None:
    table = InviteTransactions()
    first = table.create(request())
    second = table.create(request())
    table.remove(first)
    assert table.match(request()) is second
    assert len(table) == 1
    assert table.of_call("c1") == [second]
    second.record(response(200))
    assert table.match_ack(request("ACK", branch="z9hG4bK-x")) is second


def test_create_without_a_key_or_cseq_keeps_nothing() -> None:
    table = InviteTransactions()
    raw = b"INVITE sip:a@b SIP/2.0\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    assert table.create(SipRequest.parse(raw)) is None
    raw = (
        b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n"
        b"Call-ID: c\r\nContent-Length: 0\r\n\r\n"
    )
    assert table.create(SipRequest.parse(raw)) is None
    assert len(table) == 0


def test_full_at_max_size() -> None:
    assert InviteTransactions().max_size == MAX_TRANSACTIONS == 20_000
    table = InviteTransactions(max_size=2)
    table.create(request(branch="z9hG4bK-1"))
    assert not table.full
    table.create(request(branch="z9hG4bK-2"))
    assert table.full
