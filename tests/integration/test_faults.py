"""Faults, one at a time, each with a bystander: a second call in the same gateway whose
pacing is timed at its caller (kernel receive stamps) while the fault happens, and must not be
disturbed by it: nothing lost, no gap over 60 ms (three packet times; a fault that reaches
another call, a blocked loop or a starved pacer, shows as losses or gaps of that size). Whether
the media target (gap p99 <= 22 ms, max <= 30 ms) held is printed, not asserted: on a shared
2-core machine scheduling noise alone breaks it (measured: 2 of 11 faults within it, p99
21-28 ms, max 22-33 ms, nothing lost, at a load average of 3-4); the benchmarks in tests/perf
own that target.

Every call that ends must still leave its record: the `call.ended` log line, and with
`records.transcripts_dir`/`records.calls_dir` its transcript and call record with the end
reason. Real gateway process, SIPp for the signalling, Python sockets for the media, the fake
Realtime service in this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gateway.agent import EmbeddedRealtimeServer, EmbeddedSession
from gateway.media.g711 import PCMU
from gateway.media.rtp import RtpSender
from gateway.realtime.protocol import PCM16_RATE
from tests.audio import active_bounds, normalized_xcorr, speech_wav

from .gateway_proc import GatewayProcess
from .pacing import PacingProbe
from .peers import LOOPBACK, Sipp, free_port_block, free_udp_port, missing_peer_tools
from .rtp_caller import RtpCaller, voice
from .rtp_peer import RtpPeer
from .scenarios import (
    SIP_TESTS,
    in_dialog,
    invite,
    invite_expecting,
    ok_to_request,
    pause,
    recv,
    recv_request,
    run_sipp,
    scenario,
    sdp,
    sipp_dial,
)

pytestmark = SIP_TESTS


def config(fake: EmbeddedRealtimeServer, tmp_path: Path, **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "realtime": {"url": fake.url, "auth": {"method": "none"}},
        "agent": {"input_transcription": {}},
        "metrics": {"debug_state": True},  # what the process holds (debug_state below)
        "records": {
            "transcripts_dir": str(tmp_path / "transcripts"),
            "calls_dir": str(tmp_path / "calls"),
        },
    }
    for section, values in extra.items():
        base[section] = {**base.get(section, {}), **values}
    return base


@dataclass
class Bystander:
    probe: PacingProbe
    sipp: Sipp
    sip_call_id: str
    session: EmbeddedSession | None


@contextlib.asynccontextmanager
async def bystander(
    tmp_path: Path, gateway: GatewayProcess, fake: EmbeddedRealtimeServer | None
) -> AsyncIterator[Bystander]:
    """A call that runs alongside the fault; its pacing window starts once it is up."""
    async with PacingProbe() as probe:
        sipp = sipp_dial(tmp_path / "bystander", gateway.port, probe.port)
        async with sipp:
            answered = await gateway.wait_for(
                "call.answered",
                timeout=20,
                where=lambda e: e["rtp_remote"].endswith(f":{probe.port}"),
            )
            await probe.wait_packets(25, timeout=10)
            session = fake.sessions[-1] if fake is not None else None
            probe.start_window()
            yield Bystander(probe, sipp, answered["sip_call_id"], session)


async def assert_unaffected(gateway: GatewayProcess, by: Bystander) -> None:
    """The bystander is still up, lost nothing and had no gap over 60 ms (DISTURBED_GAP_MS)
    during the fault (a window of one second at least); whether the media target itself
    (p99 <= 22 ms, max <= 30 ms) held is printed: the benchmarks own it (module docstring)."""
    await by.probe.window_of(50)
    report = by.probe.window()
    print(f"\nbystander pacing during the fault: {report}, target held: {report.within_target()}")
    assert report.packets >= 50, report
    assert report.undisturbed(), report
    assert not gateway.find("call.ended", sip_call_id=by.sip_call_id)


def assert_record(tmp_path: Path, ended: dict[str, Any], reason: str) -> None:
    """The ended call's transcript and call record both carry its end reason."""
    assert ended["reason"] == reason
    record = json.loads((tmp_path / "calls" / f"{ended['call_id']}.json").read_text())
    assert record["end_reason"] == reason
    [transcript] = [p for p in (tmp_path / "transcripts").glob(f"*_{ended['call_id']}.jsonl")]
    last = json.loads(transcript.read_text().splitlines()[-1])
    assert last["event"] == "ended" and last["reason"] == reason


@contextlib.asynccontextmanager
async def scene(
    tmp_path: Path, fake: EmbeddedRealtimeServer, cfg: dict[str, Any], phone_port: int
) -> AsyncIterator[tuple[GatewayProcess, Bystander, Sipp]]:
    """The gateway, the bystander call, and the victim call (SIPp offering `phone_port`)."""
    async with (
        GatewayProcess(tmp_path, cfg) as gateway,
        bystander(tmp_path, gateway, fake) as by,
        sipp_dial(tmp_path / "victim", gateway.port, phone_port) as sipp,
    ):
        yield gateway, by, sipp


async def victim_ended(gateway: GatewayProcess, victim: RtpCaller, timeout: float) -> dict:
    return await gateway.wait_for(
        "call.ended", timeout=timeout, where=lambda e: e["call_id"] in _call_ids(gateway, victim)
    )


def _call_ids(gateway: GatewayProcess, phone: RtpCaller | RtpPeer | PacingProbe) -> set[str]:
    return {
        e["call_id"]
        for e in gateway.find("call.answered")
        if e["rtp_remote"].endswith(f":{phone.port}")
    }


def metrics_text(gateway: GatewayProcess) -> str:
    with urllib.request.urlopen(f"{gateway.metrics_url}/metrics", timeout=5) as response:
        return str(response.read().decode())


def metric(gateway: GatewayProcess, name: str) -> float:
    """The sum of a metric's samples on /metrics."""
    text = metrics_text(gateway)
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and not line.startswith("#")
    )


def debug_state(gateway: GatewayProcess) -> dict[str, Any]:
    with urllib.request.urlopen(f"{gateway.metrics_url}/debug/state", timeout=5) as response:
        return json.loads(response.read())


# --- the Realtime service misbehaves ----------------------------------------------------------


async def test_stalled_service_is_replaced_and_the_call_goes_on(tmp_path: Path) -> None:
    """The service stops sending and answering pings (stall_timeout_s 1 here): the keepalive
    gives up, the link opens a new session, the call goes on and ends normally later."""
    async with EmbeddedRealtimeServer() as fake, RtpCaller() as phone:
        cfg = config(fake, tmp_path, realtime={"stall_timeout_s": 1})
        async with scene(tmp_path, fake, cfg, phone.port) as (gateway, by, sipp):
            await phone.wait_until(lambda: bool(phone.heard), 15, "the first packet")
            stalled = fake.sessions[-1]
            stalled.stall()
            event = await gateway.wait_for("realtime.stalled", timeout=10)
            await gateway.wait_for("realtime.reconnected", timeout=10)
            assert event["waited_for"] == "keepalive pong"
            # The new session hears the caller: an echo comes back.
            phone.say(voice(1.0, 140.0))
            await phone.wait_until(lambda: phone.sound_packets >= 25, 20, "the echo")
            await assert_unaffected(gateway, by)
            await stalled.drop(1006)
            await fake.sessions[-1].drop(1000, "done")
            ended = await victim_ended(gateway, phone, timeout=10)
            assert await sipp.wait(15) == 0, sipp.report()
    assert_record(tmp_path, ended, "realtime_closed:1000")


@pytest.mark.parametrize("fault", ["stall", "drop"])
async def test_service_lost_mid_answer_hangs_up_with_the_record(tmp_path: Path, fault: str) -> None:
    """Mid-answer the service stalls (its events stop) or drops the socket, and refuses the
    reconnect: the caller gets a BYE, the transcript and the call record say why."""
    answer = (voice(20.0, 180.0, -18.0, PCM16_RATE), "A long answer.")
    async with EmbeddedRealtimeServer(answer=answer, burst_speed=1.0) as fake, RtpCaller() as phone:
        cfg = config(fake, tmp_path, realtime={"stall_timeout_s": 1})
        async with scene(tmp_path, fake, cfg, phone.port) as (gateway, by, sipp):
            await phone.wait_until(lambda: bool(phone.heard), 15, "the first packet")
            session = fake.sessions[-1]
            phone.say(voice(1.0, 140.0))
            await phone.wait_until(lambda: phone.sound_packets >= 25, 20, "the answer")
            fake.refuse_status = 503
            if fault == "stall":
                session.stall(pongs=True)  # the answer stops, the socket lives on
                stalled = await gateway.wait_for("realtime.stalled", timeout=10)
                assert stalled["waited_for"] == "the rest of an answer"
            else:
                await session.drop(1011)
            failed = await gateway.wait_for("realtime.reconnect_failed", timeout=10)
            assert "HTTP 503" in failed["reason"]
            ended = await victim_ended(gateway, phone, timeout=10)
            assert await sipp.wait(15) == 0, sipp.report()  # it got the BYE and answered it
            await assert_unaffected(gateway, by)
    reason = "realtime_closed:1006" if fault == "stall" else "realtime_closed:1011"
    assert_record(tmp_path, ended, reason)


async def test_malformed_frames_do_not_end_the_call(tmp_path: Path) -> None:
    async with EmbeddedRealtimeServer() as fake, RtpCaller() as phone:
        cfg = config(fake, tmp_path)
        async with scene(tmp_path, fake, cfg, phone.port) as (gateway, by, sipp):
            await phone.wait_until(lambda: bool(phone.heard), 15, "the first packet")
            session = fake.sessions[-1]
            for frame in (
                "{not json",
                "[1, 2, 3]",
                '{"no": "type"}',
                '{"type": "response.output_audio.delta", "response_id": "r"}',
                '{"type": "response.output_audio.delta", "response_id": "r", '
                '"item_id": "i", "delta": "***not base64***"}',
                '{"type": "input_audio_buffer.speech_started", "audio_start_ms": "x"}',
                "\udcff".encode("utf-8", "surrogatepass").decode("latin-1"),
            ):
                await session.send_raw(frame)
            await gateway.wait_for("realtime.malformed_event", timeout=10)
            # Still a working call: the caller speaks, the agent's echo comes back.
            phone.say(voice(1.0, 140.0))
            await phone.wait_until(lambda: phone.sound_packets >= 25, 20, "the echo")
            assert metric(gateway, 'sipgw_realtime_errors_total{code="malformed_event"}') == 7
            await assert_unaffected(gateway, by)
            await session.drop(1000, "done")
            ended = await victim_ended(gateway, phone, timeout=10)
            assert await sipp.wait(15) == 0, sipp.report()
    assert_record(tmp_path, ended, "realtime_closed:1000")


async def test_error_codes_the_service_makes_up_do_not_grow_the_metrics(tmp_path: Path) -> None:
    """1000 error events, each with a code of its own, then a close with a private code: the
    call goes on, and /metrics counts them all under a bounded set of labels (other)."""
    async with EmbeddedRealtimeServer() as fake, RtpCaller() as phone:
        cfg = config(fake, tmp_path)
        async with scene(tmp_path, fake, cfg, phone.port) as (gateway, by, sipp):
            await phone.wait_until(lambda: bool(phone.heard), 15, "the first packet")
            session = fake.sessions[-1]
            for i in range(1000):
                error = {"type": "invalid_request_error", "code": f"made_up_{i}", "message": "x"}
                await session.send_raw(json.dumps({"type": "error", "error": error}))
            await gateway.wait_for(
                "realtime.error", timeout=20, where=lambda e: e["code"] == "made_up_999"
            )
            # Logged: the first ten, then every hundredth (the 1000th is made_up_999).
            assert len(gateway.find("realtime.error")) == 10 + 10
            await session.drop(4321, "private")
            ended = await victim_ended(gateway, phone, timeout=10)
            assert await sipp.wait(15) == 0, sipp.report()
            await assert_unaffected(gateway, by)
            text = metrics_text(gateway)
    assert_record(tmp_path, ended, "realtime_closed:4321")
    codes = {
        line.split('code="', 1)[1].split('"', 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("sipgw_realtime_errors_total{")
    }
    assert codes == {"other": 1001}, codes


async def test_transcripts_of_items_never_played_are_not_kept_for_the_call(
    tmp_path: Path,
) -> None:
    """The service sends transcript deltas for 500 items it never plays: the gateway keeps
    only the last few open and writes the others at once (memory bounded during the call)."""
    from gateway.bridge.transcript import MAX_OPEN_AGENT_TURNS

    count = 500
    async with EmbeddedRealtimeServer() as fake, RtpCaller() as phone:
        cfg = config(fake, tmp_path)
        async with (
            GatewayProcess(tmp_path, cfg) as gateway,
            sipp_dial(tmp_path / "victim", gateway.port, phone.port) as sipp,
        ):
            await phone.wait_until(lambda: bool(phone.heard), 15, "the first packet")
            session = fake.sessions[-1]
            for i in range(count):
                delta = {"response_id": "resp_x", "item_id": f"item_{i}", "delta": f"delta {i}"}
                event = {"type": "response.output_audio_transcript.delta", **delta}
                await session.send_raw(json.dumps(event))
            last_evicted = f"delta {count - 1 - MAX_OPEN_AGENT_TURNS}"
            await gateway.wait_for(
                "call.transcript", timeout=20, where=lambda e: e.get("full_text") == last_evicted
            )
            assert len(gateway.find("call.transcript")) == count - MAX_OPEN_AGENT_TURNS
            assert not gateway.find("call.ended")  # written during the call, not at its end
            await session.drop(1000, "done")
            ended = await victim_ended(gateway, phone, timeout=10)
            assert await sipp.wait(15) == 0, sipp.report()
    assert_record(tmp_path, ended, "realtime_closed:1000")
    assert len(gateway.find("call.transcript")) == count


async def test_a_long_answer_far_ahead_of_real_time_is_capped(tmp_path: Path) -> None:
    """A 40 s answer at 20x real time arrives in 2 s; media.playback_buffer_s 2 holds the
    memory to 2 s of audio: the rest is dropped, logged and counted."""
    answer = (voice(40.0, 180.0, -18.0, PCM16_RATE), "A very long answer.")
    async with (
        EmbeddedRealtimeServer(answer=answer, burst_speed=20.0) as fake,
        RtpCaller() as phone,
    ):
        cfg = config(fake, tmp_path, media={"playback_buffer_s": 2})
        async with scene(tmp_path, fake, cfg, phone.port) as (gateway, by, sipp):
            await phone.wait_until(lambda: bool(phone.heard), 15, "the first packet")
            phone.say(voice(1.0, 140.0))
            overflow = await gateway.wait_for("playback.overflow", timeout=20)
            assert overflow["limit_s"] == 2
            await gateway.wait_for("realtime.response_done", timeout=10)
            state = debug_state(gateway)
            assert 0 < state["playback_buffered_s"] <= 2.0, state
            await phone.wait_until(
                lambda: phone.spurts() and phone.heard[-1].at - phone.spurts()[-1][-1].at > 0.3,
                15,
                "the end of what was kept",
            )
            dropped = metric(gateway, "sipgw_playback_dropped_seconds_total")
            heard_s = phone.sound_packets * 0.02
            print(f"\n40 s answer at 20x: heard {heard_s:.1f} s, dropped {dropped:.1f} s")
            assert heard_s < 6 and 40 - heard_s - 1 < dropped <= 40 - heard_s + 1
            await assert_unaffected(gateway, by)
            await gateway.stop()
            assert await sipp.wait(15) == 0, sipp.report()


async def test_a_refusing_service_gets_503_with_retry_after_then_calls_succeed(
    tmp_path: Path,
) -> None:
    async with EmbeddedRealtimeServer(retry_after_s=7) as fake:
        async with (
            GatewayProcess(tmp_path, config(fake, tmp_path)) as gateway,
            bystander(tmp_path, gateway, fake) as by,
        ):
            fake.refuse_status = 429
            refused = invite_expecting(
                tmp_path / "refused.xml", 503, headers={"Retry-After": "^ *7$"}
            )
            for _ in range(3):
                await run_sipp(tmp_path, refused, gateway.port, context=gateway.tail)
            rejected = gateway.find("call.rejected")
            assert len(rejected) == 3 and all(r["http_status"] == 429 for r in rejected)
            fake.refuse_status = None
            short = scenario(
                tmp_path / "short.xml",
                invite(sdp()),
                recv(100, optional=True),
                recv(200),
                in_dialog("ACK", 1),
                pause(300),
                in_dialog("BYE", 2),
                recv(200),
            )
            await run_sipp(tmp_path, short, gateway.port, calls=2, context=gateway.tail)
            await assert_unaffected(gateway, by)
    records = [json.loads(p.read_text()) for p in (tmp_path / "calls").glob("*.json")]
    reasons = sorted(r["end_reason"] for r in records if r["sip_call_id"] != by.sip_call_id)
    assert reasons == ["caller_bye"] * 2 + ["realtime_unavailable"] * 3


# --- the caller's RTP misbehaves --------------------------------------------------------------


def held_call(path: Path, media_port: int, *, hold_ms: int) -> Path:
    """A call that sends no RTP at all, holds (sendonly) for `hold_ms`, resumes, and then
    waits for the gateway's BYE."""
    return scenario(
        path,
        invite(sdp(port=media_port, ip=LOOPBACK)),
        recv(100, optional=True),
        recv(200),
        in_dialog("ACK", 1),
        invite(
            sdp(port=media_port, ip=LOOPBACK, direction="sendonly", version=2),
            branch="hold",
            cseq=2,
            in_dialog=True,
        ),
        recv(200, body="a=recvonly"),
        in_dialog("ACK", 2),
        pause(hold_ms),
        invite(
            sdp(port=media_port, ip=LOOPBACK, version=3), branch="resume", cseq=3, in_dialog=True
        ),
        recv(200, body="a=sendrecv"),
        in_dialog("ACK", 3),
        recv_request("BYE", timeout_ms=15000),
        ok_to_request(),
    )


async def test_rtp_timeout_hangs_up_but_not_while_on_hold(tmp_path: Path) -> None:
    """media.rtp_timeout_s 1.5: a caller that sends no RTP gets a BYE 1.5 s after it last
    could have; 3 s on hold in between do not count."""
    async with EmbeddedRealtimeServer() as fake:
        cfg = config(fake, tmp_path, media={"rtp_timeout_s": 1.5})
        async with (
            GatewayProcess(tmp_path, cfg) as gateway,
            bystander(tmp_path, gateway, fake) as by,
        ):
            silent = held_call(tmp_path / "held.xml", free_udp_port(), hold_ms=3000)
            await run_sipp(tmp_path, silent, gateway.port, timeout=30, context=gateway.tail)
            ended = await gateway.wait_for(  # logged once the call's task has finished
                "call.ended", timeout=10, where=lambda e: e["sip_call_id"] != by.sip_call_id
            )
            hold = gateway.find("call.hold")[0]["timestamp"]
            resume = gateway.find("call.resume")[0]["timestamp"]
            timeout = gateway.find("call.rtp_timeout")[0]
            assert timeout["silent_s"] >= 1.5
            print(f"\nhold {hold} resume {resume} rtp_timeout {timeout['timestamp']}")
            assert resume < timeout["timestamp"]  # the hold did not end the call
            assert ended["duration_s"] > 3 + 1.5
            await assert_unaffected(gateway, by)
    assert_record(tmp_path, ended, "rtp_timeout")


@pytest.mark.skipif(bool(missing_peer_tools("espeak-ng", "sox")), reason="needs espeak-ng, sox")
async def test_echo_survives_five_percent_loss_and_forty_ms_jitter(tmp_path: Path) -> None:
    speech = speech_wav(
        tmp_path / "speech.wav", "Please read me back my account number", 8000, 0.5, 6.0
    )
    start, end = active_bounds(speech, 8000)
    sender = RtpSender(0, 160)
    packets = [
        bytes(sender.build(PCMU.encode(speech[i : i + 160])))
        for i in range(0, len(speech) - 159, 160)
    ]
    rng = random.Random(9)
    # Each packet leaves 0-40 ms late (out of order whenever a later one is less late); 5 %
    # never arrive at all.
    schedule = sorted(
        (i * 0.02 + rng.uniform(0, 0.04), data)
        for i, data in enumerate(packets)
        if rng.random() >= 0.05
    )
    lost = len(packets) - len(schedule)
    peer = await RtpPeer.open()
    try:
        async with (
            GatewayProcess(
                tmp_path, {"records": {"calls_dir": str(tmp_path / "calls")}}
            ) as gateway,
            bystander(tmp_path, gateway, None) as by,
        ):
            sipp = sipp_dial(tmp_path / "victim", gateway.port, peer.port)
            async with sipp:
                answered = await gateway.wait_for(
                    "call.answered",
                    timeout=20,
                    where=lambda e: e["rtp_remote"].endswith(f":{peer.port}"),
                )
                dest = (LOOPBACK, int(answered["rtp_local"].rsplit(":", 1)[1]))
                await play_at(peer, dest, schedule)
                await peer.wait_received(lambda: len(peer.received) > len(packets) + 200, 20)
                await assert_unaffected(gateway, by)
                await gateway.stop()
                assert await sipp.wait(15) == 0, sipp.report()
    finally:
        peer.close()
    [stats] = [s for s in gateway.find("rtp.stats") if s["call_id"] == answered["call_id"]]
    assert stats["lost"] == lost and stats["reordered"] > 0
    heard = PCMU.decode(b"".join(bytes(p.payload) for _, p in peer.received))
    peak, _ = normalized_xcorr(speech[start:end], heard)
    print(f"\n5 % loss, 0-40 ms jitter ({stats['reordered']} reordered): correlation {peak:.3f}")
    assert peak >= 0.8


async def play_at(
    peer: RtpPeer, dest: tuple[str, int], schedule: list[tuple[float, bytes]]
) -> None:
    """Send each packet at its own offset from now (a network's jitter, not synchronisation)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for offset, data in schedule:
        await asyncio.sleep(max(0.0, start + offset - loop.time()))
        assert peer.transport is not None
        peer.transport.sendto(data, dest)


async def test_rtp_flood_is_contained(tmp_path: Path) -> None:
    """Ten times the packet rate from the caller's own address, and the same from a stranger:
    the call goes on, the stranger is ignored, the excess of the caller dropped and counted."""
    peer = await RtpPeer.open()
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stranger.bind((LOOPBACK, 0))
    try:
        async with EmbeddedRealtimeServer() as fake:
            cfg = config(fake, tmp_path)
            async with scene(tmp_path, fake, cfg, peer.port) as (gateway, by, sipp):
                answered = await gateway.wait_for(
                    "call.answered",
                    timeout=20,
                    where=lambda e: e["rtp_remote"].endswith(f":{peer.port}"),
                )
                dest = (LOOPBACK, int(answered["rtp_local"].rsplit(":", 1)[1]))
                sender = RtpSender(0, 160)
                quiet = PCMU.encode(np.zeros(160, np.int16))
                # 3 s at 500 packets/s from each: 10x a caller's 50.
                flood = [bytes(sender.build(quiet)) for _ in range(1500)]
                await asyncio.gather(
                    peer.play(dest, flood, ptime_s=0.002),
                    flood_from(stranger, dest, flood, ptime_s=0.002),
                )
                await gateway.wait_for("rtp.flood", timeout=5)
                await assert_unaffected(gateway, by)
                await fake.sessions[-1].drop(1000, "done")
                ended = await gateway.wait_for(
                    "call.ended",
                    timeout=10,
                    where=lambda e: e["call_id"] == answered["call_id"],
                )
                assert await sipp.wait(15) == 0, sipp.report()
    finally:
        peer.close()
        stranger.close()
    [stats] = [s for s in gateway.find("rtp.stats") if s["call_id"] == answered["call_id"]]
    print(f"\nflood: {stats}")
    assert stats["foreign_source"] == 1500
    # 2x the packet rate passes after a 1 s burst: ~50 + 3 s x 100 of the 1500.
    assert 1500 - 450 <= stats["flood_dropped"] <= 1500 - 300
    assert_record(tmp_path, ended, "realtime_closed:1000")


async def flood_from(
    sock: socket.socket, dest: tuple[str, int], packets: list[bytes], ptime_s: float
) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i, data in enumerate(packets):
        await asyncio.sleep(max(0.0, start + i * ptime_s - loop.time()))
        sock.sendto(data, dest)


# --- too many calls at once -------------------------------------------------------------------


def answered_or_refused(path: Path) -> Path:
    """An INVITE answered 200 (then a short call, hung up by the caller) or refused 503 with
    Retry-After: both pass; the gateway's log says which."""
    text = scenario(
        path,
        invite(sdp()),
        recv(100, optional=True),
        recv(200, optional=True).replace("<recv", '<recv next="answered"', 1),
        recv(503, headers={"Retry-After": "^ *[0-9]+$"}),
        in_dialog("ACK", 1, branch="inv1"),
        '  <nop next="end"/>',
        '  <label id="answered"/>',
        in_dialog("ACK", 1),
        pause(1500),
        in_dialog("BYE", 2),
        recv(200),
        '  <label id="end"/>',
    )
    return text


async def test_a_burst_of_invites_above_max_calls(tmp_path: Path) -> None:
    """12 INVITEs at once with room for 3 more calls: 3 answered, 9 refused 503, no crash."""
    async with EmbeddedRealtimeServer() as fake:
        cfg = config(fake, tmp_path, sip={"max_calls": 4})
        async with (
            GatewayProcess(tmp_path, cfg) as gateway,
            bystander(tmp_path, gateway, fake) as by,
        ):
            burst = Sipp(
                tmp_path / "burst",
                [
                    "-sf",
                    answered_or_refused(tmp_path / "burst.xml"),
                    "-m",
                    12,
                    "-l",
                    12,
                    "-r",
                    200,
                    "-i",
                    LOOPBACK,
                    "-p",
                    free_udp_port(),
                    "-mp",
                    free_port_block(4),
                    "-timeout",
                    30,
                    "-timeout_error",
                    f"{LOOPBACK}:{gateway.port}",
                ],
                name="burst",
            )
            (tmp_path / "burst").mkdir()
            await burst.start()
            assert await burst.wait(40) == 0, f"{burst.report()}\n{gateway.tail()}"
            others = [
                e for e in gateway.find("call.answered") if e["sip_call_id"] != by.sip_call_id
            ]
            refused = gateway.find("call.rejected")
            assert len(others) == 3 and len(refused) == 9
            assert all(r["status"] == 503 and "max_calls" in r["reason"] for r in refused)
            await assert_unaffected(gateway, by)
            ended = [  # logged once each call's task has finished, just after SIPp's BYE
                await gateway.wait_for(
                    "call.ended",
                    timeout=10,
                    where=lambda e, cid=a["sip_call_id"]: e["sip_call_id"] == cid,
                )
                for a in others
            ]
            assert [e["reason"] for e in ended] == ["caller_bye"] * 3
    # Every INVITE of the burst left its record, the refused ones too (read once the gateway
    # has stopped: its refusals are written in the background).
    records = [json.loads(p.read_text()) for p in (tmp_path / "calls").glob("*.json")]
    burst_records = [r for r in records if r["sip_call_id"] != by.sip_call_id]
    assert (
        sorted((r["end_reason"], r["sip_status"]) for r in burst_records)
        == [("caller_bye", None)] * 3 + [("max_calls", 503)] * 9
    ), burst_records
