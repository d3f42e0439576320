"""G.722 and Opus: the coders (rates, RTP ticks, concealment) and their SDP negotiation."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from aiosipua import parse_sdp, serialize_sdp

from gateway.config import parse_config
from gateway.media.codecs import codec_spec, is_g711
from gateway.media.dtmf import DtmfDecoder, DtmfEvent
from gateway.media.key_sender import KeySender
from gateway.media.opus import encoder_settings, packet_ticks
from gateway.media.receiver import Lost, RtpReceiver, Signal
from gateway.media.rtp import RtpPacket, RtpSender
from gateway.sip.sdp import NotAcceptable, SdpSession, build_answer, plan_media
from gateway.startup import StartupError, codecs_loadable

from .test_sdp import offer


def tone(hz: float, rate: int, seconds: float = 1.0, level: int = 8000) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (level * np.sin(2 * np.pi * hz * t)).astype(np.int16)


def frames(pcm: np.ndarray, n: int) -> list[np.ndarray]:
    return [pcm[i : i + n] for i in range(0, len(pcm) - n + 1, n)]


def band_share(pcm: np.ndarray, rate: int, low_hz: float) -> float:
    """The share of the signal's energy above ``low_hz``."""
    power = np.abs(np.fft.rfft(pcm.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(len(pcm), 1 / rate)
    return float(power[freqs > low_hz].sum() / power.sum())


@pytest.mark.parametrize(("name", "rate", "clock"), [("G722", 16000, 8000), ("opus", 24000, 48000)])
def test_wideband_tone_survives_the_round_trip(name: str, rate: int, clock: int) -> None:
    codec = codec_spec(name).open()
    assert (codec.rate, codec.clock_rate) == (rate, clock)
    sent = tone(6000, rate)  # above G.711's 4 kHz band
    packets = [codec.encode(f) for f in frames(sent, rate // 50)]
    ticks = [codec.ticks(p) if codec.ticks else len(p) for p in packets]
    assert set(ticks) == {clock // 50}  # one 20 ms packet = a ptime of RTP clock
    heard = np.concatenate([codec.decode(p) for p in packets])
    assert len(heard) == len(sent)
    assert band_share(heard[rate // 5 :], rate, 4000) > 0.95


def test_g722_conceals_by_fading_the_last_frame_out() -> None:
    codec = codec_spec("G722").open()
    packets = [codec.encode(f) for f in frames(tone(1000, 16000, 0.2), 320)]
    last = codec.decode(packets[0])
    lost = codec.conceal(3 * 160, packets[1])  # three 20 ms packets lost
    assert len(lost) == 3 * 320
    rms = [float(np.sqrt(np.mean(np.square(p, dtype=np.float64)))) for p in lost.reshape(3, 320)]
    base = float(np.sqrt(np.mean(np.square(last, dtype=np.float64))))
    assert rms[0] == pytest.approx(base / 2, rel=0.05)
    assert rms[1] == pytest.approx(base / 4, rel=0.05)
    assert rms[2] == 0.0


def test_opus_conceals_a_lost_packet_from_the_next_ones_fec() -> None:
    sender = codec_spec("opus").open("useinbandfec=1")  # the peer decodes FEC: we send it
    receiver = codec_spec("opus").open()
    packets = [sender.encode(f) for f in frames(tone(440, 24000, 1.0), 480)]
    heard = []
    for i, packet in enumerate(packets):
        if i == 25:
            continue  # lost
        if i == 26:
            heard.append(receiver.conceal(960, packet))
        heard.append(receiver.decode(packet))
    out = np.concatenate(heard)
    assert len(out) == 24000
    assert receiver.fec_frames == 1
    # The concealed frame carries the tone, not a hole.
    lost = out[25 * 480 : 26 * 480].astype(np.float64)
    assert np.sqrt(np.mean(lost**2)) > 8000 / np.sqrt(2) / 4


def test_opus_plc_covers_a_longer_gap_and_junk_counts_as_lost() -> None:
    codec = codec_spec("opus").open()
    packets = [codec.encode(f) for f in frames(tone(440, 24000, 0.2), 480)]
    codec.decode(packets[0])
    assert len(codec.conceal(3 * 960, None)) == 3 * 480  # PLC, nothing to read FEC from
    assert len(codec.decode(b"\xff\xff\xff")) == 0  # not Opus: counted, not raised
    assert codec.counters() == {"opus_fec_frames": 0, "opus_bad_packets": 1, "opus_dtx_frames": 0}
    assert packet_ticks(b"") == 0


def test_opus_silence_goes_out_as_dtx_without_running_the_encoder() -> None:
    """The agent's silence: encoded for SILENT_FRAMES_ENCODED frames, then one TOC byte a
    frame (its configuration, code 0: a frame of zero bytes) that a decoder conceals as
    silence; the next sound is encoded again at once and decodes as that sound."""
    from gateway.media.opus import SILENT_FRAMES_ENCODED, OpusCodec

    encoder, decoder = OpusCodec(), OpusCodec()
    sound = frames(tone(440, 24000, 0.4), 480)
    quiet = np.zeros(480, dtype=np.int16)
    before = [encoder.encode(f) for f in sound[:10]]
    silent = [encoder.encode(quiet) for _ in range(SILENT_FRAMES_ENCODED + 20)]
    after = [encoder.encode(f) for f in sound[10:]]
    assert all(len(p) > 1 for p in before + silent[:SILENT_FRAMES_ENCODED] + after)
    dtx = silent[SILENT_FRAMES_ENCODED:]
    assert set(dtx) == {bytes([before[-1][0] & 0xFC])} and encoder.dtx_frames == 20
    assert encoder.counters()["opus_dtx_frames"] == 20
    decoded = [decoder.decode(p) for p in before + silent + after]
    assert all(len(d) == 480 for d in decoded) and decoder.bad_packets == 0
    quiet_out = np.concatenate(decoded[10 + SILENT_FRAMES_ENCODED : 10 + len(silent)])
    assert np.abs(quiet_out).max() <= 4
    resumed = np.concatenate(decoded[-8:]).astype(np.float64)
    reference = np.concatenate(sound[-8:]).astype(np.float64)
    lag = int(np.argmax(np.correlate(resumed, reference[:2400], "valid")))
    piece = resumed[lag : lag + 2400]
    assert np.corrcoef(piece, reference[:2400])[0, 1] > 0.9


def test_opus_encoder_follows_the_peers_fmtp() -> None:
    assert encoder_settings(None) == {"max_bandwidth": 1104, "bitrate": 32000, "fec": 0}
    narrow = encoder_settings("maxplaybackrate=8000; useinbandfec=1; maxaveragebitrate=12000")
    assert narrow == {"max_bandwidth": 1101, "bitrate": 12000, "fec": 1}
    assert encoder_settings("maxplaybackrate=16000")["max_bandwidth"] == 1103
    # Hostile values fall back to the defaults, never raise.
    assert encoder_settings("maxplaybackrate=9" * 200 + ";;=;x")["bitrate"] == 32000


HD_OFFER = (
    "m=audio 4000 RTP/AVP 96 9 0 97 101",
    "a=rtpmap:96 opus/48000/2",
    "a=fmtp:96 maxplaybackrate=16000;useinbandfec=1;minptime=20",
    "a=rtpmap:9 G722/8000",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:97 telephone-event/48000",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-16",
    "a=ptime:10",
)


def test_opus_first_takes_the_offers_pt_its_fmtp_and_the_48k_telephone_event() -> None:
    sdp = parse_sdp(offer(*HD_OFFER))
    plan = plan_media(sdp, ["opus", "G722", "PCMU"])
    assert (plan.codec.name, plan.payload_type, plan.dtmf_payload_type) == ("opus", 96, 97)
    assert plan.ptime_ms == 20  # the offer's 10 ms is below its own minptime
    assert plan.codec_fmtp is not None and "useinbandfec=1" in plan.codec_fmtp
    text = serialize_sdp(build_answer(sdp, plan, "192.0.2.1", 10002))
    assert "m=audio 10002 RTP/AVP 96 97\r\n" in text
    assert "a=rtpmap:96 opus/48000/2\r\n" in text
    assert "a=rtpmap:97 telephone-event/48000\r\n" in text
    assert "useinbandfec=1" in text and "maxplaybackrate=24000" in text
    assert "a=ptime:20\r\n" in text and "telephone-event/8000" not in text


def test_g722_takes_static_pt_9_and_the_8k_telephone_event() -> None:
    sdp = parse_sdp(offer(*HD_OFFER))
    plan = plan_media(sdp, ["G722", "opus"])
    assert (plan.codec.name, plan.payload_type, plan.dtmf_payload_type) == ("G722", 9, 101)
    text = serialize_sdp(build_answer(sdp, plan, "192.0.2.1", 10002))
    assert "m=audio 10002 RTP/AVP 9 101\r\n" in text
    assert "a=rtpmap:9 G722/8000\r\n" in text and "telephone-event/8000" in text
    assert "opus" not in text
    assert not is_g711(plan.codec)


def test_opus_without_a_telephone_event_on_its_clock_gets_none() -> None:
    sdp = parse_sdp(offer("m=audio 4000 RTP/AVP 111 101", "a=rtpmap:111 opus/48000/2",
                          "a=rtpmap:101 telephone-event/8000"))  # fmt: skip
    plan = plan_media(sdp, ["opus"])
    assert plan.dtmf_payload_type is None  # RFC 4733 §2.1: the audio's clock or nothing
    assert "telephone-event" not in serialize_sdp(build_answer(sdp, plan, "192.0.2.1", 10002))


def test_opus_at_the_wrong_clock_is_not_opus() -> None:
    sdp = parse_sdp(offer("m=audio 4000 RTP/AVP 111 0", "a=rtpmap:111 opus/8000/2"))
    assert plan_media(sdp, ["opus", "PCMU"]).codec.name == "PCMU"


def test_our_own_offer_in_opus_uses_a_dynamic_pt_and_48k_events() -> None:
    session = SdpSession(["opus", "PCMU"], "192.0.2.1", 10002)
    text = serialize_sdp(session.offer())
    # Every configured codec, then telephone-event on each clock they need (RFC 4733 §2.1).
    assert "m=audio 10002 RTP/AVP 111 0 101 102\r\n" in text
    assert "a=rtpmap:111 opus/48000/2\r\n" in text
    assert "a=rtpmap:0 PCMU/8000\r\n" in text
    assert "a=rtpmap:101 telephone-event/8000\r\n" in text
    assert "a=rtpmap:102 telephone-event/48000\r\n" in text


def test_receiver_reports_a_gap_as_lost_for_a_codec_without_silence() -> None:
    codec = codec_spec("opus").open()
    packets = [codec.encode(f) for f in frames(tone(440, 24000, 0.1), 480)]
    receiver = RtpReceiver(111, ("192.0.2.10", 4000), codec=codec)
    sender = RtpSender(111, 960)
    outs = []
    for i, payload in enumerate(packets):
        packet = bytes(sender.build(payload))
        if i != 2:
            outs.append(list(receiver.receive(packet, ("192.0.2.10", 4000), i * 0.02)))
    # Packet 3 waits for 2 in the reorder buffer; at its deadline it goes out, the gap before
    # it reported as lost (20 ms at 48 kHz), then nothing waits any more.
    assert outs[2] == [Signal.REORDER_WAIT]
    assert list(receiver.poll(1.0)) == [Lost(960), packets[3], packets[4]]
    assert receiver.summary()["filled_ms"] == 20


def test_config_takes_the_new_codec_names_in_any_case() -> None:
    cfg = parse_config({"media": {"codecs": ["OPUS", "g722", "pcmu"]}})
    assert cfg.media.codecs == ["opus", "G722", "PCMU"]


def test_keys_on_opus_run_on_its_48k_clock_both_ways() -> None:
    sender = KeySender(frame_samples=960, tone_ms=100, gap_ms=60, clock_rate=48000)
    sender.queue("7")
    packets = [sender.next_packet(1000 + i * 960) for i in range(8)]
    durations = [struct.unpack("!BBH", p[0])[2] for p in packets if p is not None]
    assert durations == [960, 1920, 2880, 3840, 4800, 4800, 4800, 4800]  # 100 ms at 48 kHz
    assert sender.gap_frames == 3  # 60 ms of 20 ms packets
    decoder = DtmfDecoder(48000)
    heard = [
        e for p in packets if p is not None
        for e in decoder.push(RtpPacket(97, 0, p[2], 1, p[1], p[0]))
    ]  # fmt: skip
    assert heard == [DtmfEvent("7", 100)]
    # A key whose end never came is reported after 200 ms of audio on the 48 kHz clock.
    decoder.push(RtpPacket(97, 1, 900_000, 1, True, struct.pack("!BBH", 3, 10, 4800)))
    assert decoder.audio(900_000 + 4800 + 4800) == []
    assert decoder.audio(900_000 + 4800 + 9600) == [DtmfEvent("3", 100, end_seen=False)]


def test_opus_in_the_config_needs_libopus_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = parse_config({"media": {"codecs": ["opus", "PCMU"]}})
    codecs_loadable(cfg)  # libopus0 is here: nothing to say

    def missing() -> None:
        raise Exception("Could not find Opus library. Make sure it is installed.")

    monkeypatch.setattr("gateway.startup.load_libopus", missing)
    with pytest.raises(StartupError, match=r"media\.codecs: opus needs libopus"):
        codecs_loadable(cfg)
    codecs_loadable(parse_config({"media": {"codecs": ["G722", "PCMU"]}}))  # no Opus, no check


def test_a_reinvite_cannot_move_opus_to_another_payload_type() -> None:
    session = SdpSession(["opus", "PCMU"], "192.0.2.1", 10002)
    session.answer(parse_sdp(offer(*HD_OFFER)))
    assert session.plan is not None and session.plan.payload_type == 96
    moved = [line.replace("96", "98") for line in HD_OFFER]
    with pytest.raises(NotAcceptable, match="payload type 98"):
        session.answer(parse_sdp(offer(*moved)))
    assert session.plan.payload_type == 96  # the call goes on as it was
    session.answer(parse_sdp(offer(*HD_OFFER, "a=sendonly")))  # a hold keeps it: fine
