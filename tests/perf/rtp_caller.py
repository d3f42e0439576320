"""The callers' RTP for load runs: N sockets that talk to the gateway and time what it sends.

Each socket plays a caller (PCMU, 20 ms, on its own absolute schedule) and receives the
gateway's packets with the kernel's receive timestamp (SO_TIMESTAMPNS), so the inter-packet
gaps measured are the gateway's sending, not this process's scheduling.  One process, one
epoll loop, no asyncio: it must stay light next to the gateway on a 2-core machine.

Commands on stdin, one per line:
    call LOCAL_PORT GATEWAY_PORT   start sending from LOCAL_PORT to the gateway
    measure                        start counting (gaps, losses)
    stop                           print the JSON report and exit

    python tests/perf/rtp_caller.py --base PORT --calls N [--srtp-csv CSV --srtp-answers FIFO]

SRTP (SDES, AES_CM_128_HMAC_SHA1_80), with libsrtp through pylibsrtp directly rather than the
gateway's own wrapper, so the callers are a second implementation: each call gets a key of its
own, written with its port to ``CSV`` (SIPp's injection file: ``PORT;KEY;``, the key goes into
the offer's a=crypto).  The gateway's key for each call comes from its answer: SIPp's
scenario logs ``PORT KEY`` to ``FIFO`` (``-log_file``), read here as lines arrive.  Every
packet is protected before it is sent and unprotected when it comes in; a packet that fails
(authentication, replay, anything else) or arrives before its call's key is counted and
reported, never passed on.  Keys never leave this process but through those two files.
"""

from __future__ import annotations

import argparse
import base64
import heapq
import json
import os
import select
import socket
import struct
import sys
import time
from pathlib import Path

import numpy as np
import pylibsrtp
from pylibsrtp import Policy

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gateway.media.g711 import PCMU

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
PTIME = 0.02
BIN_MS = 0.1
BINS = 20_000  # gaps up to 2 s, in 0.1 ms bins
_HEADER = struct.Struct("!BBHII")
_TIMESPEC = struct.Struct("@qq")
SRTP_PROFILE = Policy.SRTP_PROFILE_AES128_CM_SHA1_80
SRTP_KEY_LEN = 30  # master key (16) + master salt (14), what a=crypto's inline: carries
_SRTP_REPLAY = ("replay check failed (bad index)", "replay check failed (index too old)")


class Leg:
    __slots__ = ("gaps_max", "key", "last_ns", "last_seq", "last_ts", "lost", "received",
                 "remote", "reordered", "rx", "seq", "sock", "ts", "ts_jumps", "tx")  # fmt: skip

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.key = b""  # this caller's SRTP master key and salt (offered in its a=crypto)
        self.tx: pylibsrtp.Session | None = None  # protects what we send, under self.key
        self.rx: pylibsrtp.Session | None = None  # unprotects the gateway's, under its key
        self.remote: tuple[str, int] | None = None
        self.seq = int.from_bytes(os.urandom(2), "big")
        self.ts = int.from_bytes(os.urandom(4), "big")
        self.last_ns = 0
        self.last_seq: int | None = None
        self.last_ts = 0
        self.received = self.lost = self.reordered = self.ts_jumps = 0
        self.gaps_max = 0.0


def caller_audio(seconds: float = 4.0) -> bytes:
    t = np.arange(int(seconds * 8000)) / 8000
    rng = np.random.default_rng(3)
    voice = 3000 * np.sin(2 * np.pi * 180 * t) + rng.normal(0, 1500, t.size)
    voice *= 0.2 + 0.8 * np.abs(np.sin(2 * np.pi * 2 * t))
    return PCMU.encode(np.clip(voice, -32768, 32767).astype(np.int16))


class SrtpCounts:
    """What SRTP refused, over the whole run (a loss or an error either way)."""

    def __init__(self) -> None:
        self.auth_failures = self.replayed = self.other_errors = 0
        # Packets from the gateway before its key came (it sends as it answers, SIPp logs the
        # key once the 200 is in): a few per call at the start are expected; none in the window.
        self.before_answer_key = self.before_answer_key_in_window = 0
        self.bad_answer_lines = 0  # lines on the answers FIFO that named no call or no key
        self.keys_learned = 0

    def refused(self, exc: pylibsrtp.Error) -> None:
        text = str(exc)
        if text in _SRTP_REPLAY:
            self.replayed += 1
        elif text in ("authentication failure", "cipher failure"):
            self.auth_failures += 1
        else:
            self.other_errors += 1

    def report(self) -> dict[str, int]:
        return {
            "answer_keys_learned": self.keys_learned,
            "auth_failures": self.auth_failures,
            "replayed": self.replayed,
            "other_errors": self.other_errors,
            "before_answer_key": self.before_answer_key,
            "before_answer_key_in_window": self.before_answer_key_in_window,
            "bad_answer_lines": self.bad_answer_lines,
        }


def srtp_session(key: bytes, outbound: bool) -> pylibsrtp.Session:
    kind = Policy.SSRC_ANY_OUTBOUND if outbound else Policy.SSRC_ANY_INBOUND
    return pylibsrtp.Session(Policy(key=key, ssrc_type=kind, srtp_profile=SRTP_PROFILE))


def learn_answer(line: bytes, by_port: dict[int, Leg], counts: SrtpCounts) -> None:
    """``PORT KEY`` from SIPp's log: the gateway's key for the call offered from PORT."""
    parts = line.split()
    try:
        port, key = int(parts[0]), base64.b64decode(parts[1], validate=True)
    except (IndexError, ValueError):
        counts.bad_answer_lines += 1
        return
    leg = by_port.get(port)
    if leg is None or len(key) != SRTP_KEY_LEN or leg.rx is not None:
        counts.bad_answer_lines += 1
        return
    leg.rx = srtp_session(key, outbound=False)
    counts.keys_learned += 1


def percentile(hist: list[int], total: int, q: float) -> float:
    target, seen = q * total, 0
    for i, count in enumerate(hist):
        seen += count
        if seen >= target:
            return round((i + 0.5) * BIN_MS, 2)
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", type=int, required=True)
    parser.add_argument("--calls", type=int, required=True)
    parser.add_argument("--srtp-csv", help="SRTP: write each call's port and key here (SIPp -inf)")
    parser.add_argument("--srtp-answers", help="SRTP: FIFO where SIPp logs PORT ANSWER-KEY")
    args = parser.parse_args()
    srtp = args.srtp_csv is not None
    if srtp != (args.srtp_answers is not None):
        parser.error("--srtp-csv and --srtp-answers go together")
    counts = SrtpCounts()

    audio = caller_audio()
    frames = [audio[i : i + 160] for i in range(0, len(audio) - 159, 160)]
    legs: dict[int, Leg] = {}
    by_port: dict[int, Leg] = {}
    ep = select.epoll()
    for i in range(args.calls):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", args.base + 2 * i))
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 1 << 20)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.setblocking(False)
        leg = Leg(sock)
        legs[sock.fileno()] = leg
        by_port[args.base + 2 * i] = leg
        ep.register(sock.fileno(), select.EPOLLIN)
        if srtp:
            leg.key = os.urandom(SRTP_KEY_LEN)
            leg.tx = srtp_session(leg.key, outbound=True)
    answers = -1
    answers_pending = b""
    if srtp:
        Path(args.srtp_csv).write_text(
            "SEQUENTIAL\n"
            + "".join(f"{port};{base64.b64encode(leg.key).decode()};\n"
                      for port, leg in by_port.items())
        )  # fmt: skip
        # Non-blocking read end first: SIPp's open of the write end then does not block.
        answers = os.open(args.srtp_answers, os.O_RDONLY | os.O_NONBLOCK)
        ep.register(answers, select.EPOLLIN)
    stdin = sys.stdin.fileno()
    os.set_blocking(stdin, False)
    ep.register(stdin, select.EPOLLIN)
    print(json.dumps({"ready": True}), flush=True)

    schedule: list[tuple[float, int, int]] = []  # (due, port, frame index)
    hist = [0] * (BINS + 1)
    gaps = 0
    measuring = False
    window_start = 0.0
    sent = 0
    pending = b""
    cmsg_space = socket.CMSG_SPACE(_TIMESPEC.size)
    while True:
        now = time.monotonic()
        while schedule and schedule[0][0] <= now:
            due, port, k = heapq.heappop(schedule)
            leg = by_port[port]
            data = _HEADER.pack(0x80, 0, leg.seq, leg.ts, port) + frames[k % len(frames)]
            if leg.tx is not None:
                data = leg.tx.protect(data)
            leg.sock.sendto(data, leg.remote)  # type: ignore[arg-type]
            leg.seq = (leg.seq + 1) & 0xFFFF
            leg.ts = (leg.ts + 160) & 0xFFFFFFFF
            sent += measuring
            heapq.heappush(schedule, (due + PTIME, port, k + 1))
        timeout = max(0.0, schedule[0][0] - time.monotonic()) if schedule else 1.0
        events = ep.poll(timeout)
        # Commands last: packets that arrived before "stop" was written are counted (a busy
        # machine can report both ready in one poll, stdin first).
        events.sort(key=lambda event: event[0] == stdin)
        for fd, _ in events:
            if fd == answers:
                try:
                    chunk = os.read(answers, 65536)
                except BlockingIOError:
                    continue
                if not chunk:  # SIPp closed its log: no more keys will come
                    ep.unregister(answers)
                    os.close(answers)
                    answers = -1
                    continue
                *lines, answers_pending = (answers_pending + chunk).split(b"\n")
                for line in lines:
                    if line.strip():
                        learn_answer(line, by_port, counts)
                continue
            if fd == stdin:
                try:
                    chunk = os.read(stdin, 65536)
                except BlockingIOError:
                    continue
                if not chunk:
                    return
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    cmd = line.decode().split()
                    if not cmd:
                        continue
                    if cmd[0] == "call":
                        leg = by_port[int(cmd[1])]
                        leg.remote = ("127.0.0.1", int(cmd[2]))
                        heapq.heappush(schedule, (time.monotonic(), int(cmd[1]), 0))
                    elif cmd[0] == "measure":
                        measuring, window_start = True, time.monotonic()
                        for leg in legs.values():
                            leg.last_ns, leg.last_seq = 0, None
                            leg.received = leg.lost = leg.reordered = leg.ts_jumps = 0
                            leg.gaps_max = 0.0
                    elif cmd[0] == "stop":
                        window = time.monotonic() - window_start if measuring else 0.0
                        srtp_counts = counts.report() if srtp else None
                        report(legs, hist, gaps, sent, window, srtp_counts)
                        return
                continue
            leg = legs[fd]
            while True:
                try:
                    data, ancdata, _, _ = leg.sock.recvmsg(2048, cmsg_space)
                except BlockingIOError:
                    break
                if srtp:  # every packet, in the window or not: all must authenticate
                    if leg.rx is None:
                        counts.before_answer_key += 1
                        counts.before_answer_key_in_window += measuring
                        continue
                    try:
                        data = leg.rx.unprotect(data)
                    except pylibsrtp.Error as exc:
                        counts.refused(exc)
                        continue
                if not measuring or len(data) < 12:
                    continue
                stamp = 0
                for level, kind, value in ancdata:
                    if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                        sec, nsec = _TIMESPEC.unpack(value[: _TIMESPEC.size])
                        stamp = sec * 1_000_000_000 + nsec
                _, _, seq, ts, _ = _HEADER.unpack_from(data)
                leg.received += 1
                if leg.last_seq is not None:
                    step = (seq - leg.last_seq) & 0xFFFF
                    if step == 0 or step > 0x8000:
                        leg.reordered += 1
                        continue
                    leg.lost += step - 1
                    gap_ms = (stamp - leg.last_ns) / 1e6
                    hist[min(int(gap_ms / BIN_MS), BINS)] += 1
                    gaps += 1
                    leg.gaps_max = max(leg.gaps_max, gap_ms)
                    if (ts - leg.last_ts) & 0xFFFFFFFF != 160 * step:
                        leg.ts_jumps += 1
                leg.last_seq, leg.last_ns, leg.last_ts = seq, stamp, ts


def report(
    legs: dict[int, Leg],
    hist: list[int],
    gaps: int,
    sent: int,
    window_s: float,
    srtp: dict[str, int] | None,
) -> None:
    active = [leg for leg in legs.values() if leg.received]
    worst = sorted((leg.gaps_max for leg in active), reverse=True)
    print(
        json.dumps(
            {
                # from "measure" to "stop" as this process read them: longer than the bench's
                # window when this process fell behind (starved by the machine's other load)
                "window_s": round(window_s, 2),
                "calls_measured": len(active),
                "packets_sent_by_callers": sent,
                "packets_received": sum(leg.received for leg in active),
                "gaps": gaps,
                "gap_ms": {
                    "p50": percentile(hist, gaps, 0.50),
                    "p99": percentile(hist, gaps, 0.99),
                    "p999": percentile(hist, gaps, 0.999),
                    "max": round(worst[0], 2) if worst else None,
                },
                "calls_with_a_gap_over_30ms": sum(g > 30 for g in worst),
                "lost": sum(leg.lost for leg in active),
                "reordered_or_duplicate": sum(leg.reordered for leg in active),
                "timestamp_jumps": sum(leg.ts_jumps for leg in active),
                # whole run, not just the window; None on plain RTP
                "srtp": srtp,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
