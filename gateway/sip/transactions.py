"""INVITE server transactions: the part of RFC 3261 §17.2.1 aiosipua leaves to its user.

A retransmitted INVITE gets the last response again and never reaches the
application (no second call, no second Realtime session). A final response is
retransmitted until its ACK: 3xx-6xx by the transaction (timer G, until timer
H), 2xx by the UAS core (§13.3.1.4); RFC 6026 keeps the transaction after a
2xx so retransmissions of the INVITE are still absorbed.

Plain objects: the table decides, `uas.py` sends and sleeps.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from aiosipua import SipRequest, SipResponse


@dataclass(frozen=True, slots=True)
class SipTimers:
    """RFC 3261 §17.1.1.1 base timers (seconds). Tests shrink T1 to keep timer tests short."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0

    @property
    def h(self) -> float:
        """Timer H (and the 2xx give-up time of §13.3.1.4): 64*T1."""
        return 64 * self.t1

    def retransmit_offsets(self) -> Iterator[float]:
        """When to send a final response again, in seconds after the first send.

        Timer G: T1, then doubling up to T2, for as long as timer H runs.
        """
        interval = self.t1
        at = interval
        while at < self.h:
            yield at
            interval = min(2 * interval, self.t2)
            at += interval


class TxState(enum.Enum):
    PROCEEDING = "proceeding"  # provisional sent (100 Trying at once)
    COMPLETED = "completed"  # 3xx-6xx sent, waiting for its ACK
    ACCEPTED = "accepted"  # 2xx sent (RFC 6026), waiting for its ACK
    CONFIRMED = "confirmed"  # ACK received; lingers to absorb retransmissions


TxKey = tuple[str, ...]


@dataclass(eq=False)
class InviteTransaction:
    key: TxKey
    call_id: str
    cseq: int
    response: SipResponse | None = None
    state: TxState = TxState.PROCEEDING
    timer: Any = None  # the asyncio task that retransmits or waits for the ACK (uas.py)

    @property
    def final(self) -> bool:
        return self.state is not TxState.PROCEEDING

    def record(self, response: SipResponse) -> bool:
        """Remember the last response sent; True when it is the first final one."""
        if self.final:
            return False
        self.response = response
        if response.status_code < 200:
            return False
        self.state = TxState.ACCEPTED if response.status_code < 300 else TxState.COMPLETED
        return True


def transaction_key(message: SipRequest | SipResponse) -> TxKey | None:
    """Branch and sent-by of the top Via (RFC 3261 §17.2.3); None without a usable Via."""
    try:
        return _key(message)
    except (ValueError, IndexError):
        return None  # a header we cannot read: no transaction to match


def _key(message: SipRequest | SipResponse) -> TxKey | None:
    vias = message.via
    if not vias:
        return None
    top = vias[0]
    sent_by = f"{top.host}:{top.port or ''}".lower()
    if top.branch and top.branch.startswith("z9hG4bK"):
        return ("3261", top.branch, sent_by)
    # RFC 2543 peers: no magic cookie, so the request's identity stands in for the branch.
    cseq = message.cseq
    from_addr = message.from_addr
    tag = (from_addr.tag if from_addr else None) or ""
    return ("2543", message.call_id or "", str(cseq.seq if cseq else 0), tag, sent_by)


MAX_TRANSACTIONS = 20_000  # INVITE transactions kept at once; beyond, new INVITEs get 503


class InviteTransactions:
    """The INVITE server transactions in progress, found by Via key or (Call-ID, CSeq): dict
    lookups only, so a table of thousands costs an INVITE nothing more than an empty one."""

    def __init__(self, max_size: int = MAX_TRANSACTIONS) -> None:
        self._by_key: dict[TxKey, InviteTransaction] = {}
        self._by_cseq: dict[tuple[str, int], InviteTransaction] = {}
        self._by_call: dict[str, list[InviteTransaction]] = {}
        self.max_size = max_size

    def __len__(self) -> int:
        return len(self._by_key)

    @property
    def full(self) -> bool:
        return len(self._by_key) >= self.max_size

    def create(self, request: SipRequest) -> InviteTransaction | None:
        key = transaction_key(request)
        cseq = request.cseq
        if key is None or cseq is None:
            return None
        old = self._by_key.get(key)
        if old is not None:
            self.remove(old)
        txn = InviteTransaction(key, request.call_id or "", cseq.seq)
        self._by_key[key] = txn
        self._by_cseq[(txn.call_id, txn.cseq)] = txn
        self._by_call.setdefault(txn.call_id, []).append(txn)
        return txn

    def match(self, message: SipRequest | SipResponse) -> InviteTransaction | None:
        """The transaction of an INVITE retransmission, of a response we send, of a CANCEL
        (same branch, §9.2) or of the ACK of a 3xx-6xx (same branch, §17.1.1.3)."""
        key = transaction_key(message)
        return self._by_key.get(key) if key is not None else None

    def match_ack(self, ack: SipRequest) -> InviteTransaction | None:
        """An ACK's transaction: by branch for 3xx-6xx, by Call-ID and CSeq for a 2xx (whose
        ACK is a transaction of its own, §13.2.2.4)."""
        txn = self.match(ack)
        if txn is not None:
            return txn
        cseq = ack.cseq
        if cseq is None:
            return None
        txn = self._by_cseq.get((ack.call_id or "", cseq.seq))
        if txn is not None and txn.state in (TxState.ACCEPTED, TxState.CONFIRMED):
            return txn
        return None

    def all(self) -> list[InviteTransaction]:
        return list(self._by_key.values())

    def of_call(self, call_id: str) -> list[InviteTransaction]:
        return list(self._by_call.get(call_id, ()))

    def remove(self, txn: InviteTransaction) -> None:
        if self._by_key.get(txn.key) is txn:
            del self._by_key[txn.key]
        if self._by_cseq.get((txn.call_id, txn.cseq)) is txn:
            del self._by_cseq[(txn.call_id, txn.cseq)]
        same_call = self._by_call.get(txn.call_id)
        if same_call is not None:
            with contextlib.suppress(ValueError):
                same_call.remove(txn)
            if not same_call:
                del self._by_call[txn.call_id]
