"""Self-check of the integration harness: real calls between baresip and SIPp on loopback.

The gateway is not involved: SIPp stands in as the callee. These tests prove that the peers
start on per-test ports, that a real call carries audio both ways, that baresip's recordings
are what it sent and what it heard, and that the audio check (normalised cross-correlation)
separates the right speech from unrelated speech.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.audio import active_bounds, normalized_xcorr, read_wav, speech_wav

from .peers import Baresip, PeerError, Sipp, free_udp_port, missing_peer_tools

pytestmark = pytest.mark.integration

RATE = 8000
SENTENCE = "The quick brown fox jumps over the lazy dog near the river bank."
OTHER_SENTENCE = "Seven green kites drift slowly above the silent harbour tonight."
ECHO_MIN = 0.8  # echoed speech scores 0.88-1.00
UNRELATED_MAX = 0.4  # an unrelated sentence scores about 0.1
CALL_TIMEOUT = 60.0  # whole baresip run, generous for a loaded 2-core CI machine
SIPP_EXIT_TIMEOUT = 20.0


def require(*tools: str) -> None:
    missing = missing_peer_tools(*tools)
    if missing:
        pytest.skip(
            f"peer binaries not installed: {', '.join(missing)} (run scripts/install-test-peers.sh)"
        )


@dataclass
class Speech:
    path: Path  # padded WAV played by a peer
    samples: np.ndarray  # the padded samples, as written
    ref: np.ndarray  # the speech alone (padding trimmed): the correlation reference
    offset: int  # where ref starts in samples


def make_speech(path: Path, text: str, tail_silence_s: float = 4.0) -> Speech:
    samples = speech_wav(path, text, RATE, lead_silence_s=0.5, tail_silence_s=tail_silence_s)
    start, end = active_bounds(samples, RATE)
    return Speech(path, samples, samples[start:end], start)


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Speech]:
    require("espeak-ng", "sox")
    d = tmp_path_factory.mktemp("speech")
    return {
        "main": make_speech(d / "main.wav", SENTENCE),
        "other": make_speech(d / "other.wav", OTHER_SENTENCE),
    }


def ms(samples: int) -> float:
    return 1000.0 * samples / RATE


def test_xcorr_separates_copies_from_unrelated_speech(speech: dict[str, Speech]) -> None:
    ref, other = speech["main"].ref, speech["other"].ref
    # A delayed, attenuated copy inside a longer, noisy recording scores ~1.0 at the right lag.
    rng = np.random.default_rng(7)
    delay = 2345
    sig = np.concatenate([rng.normal(0, 30, delay), 0.25 * ref, rng.normal(0, 30, RATE)])
    peak, lag = normalized_xcorr(ref, sig)
    print(f"\ndelayed x0.25 copy: peak={peak:.3f} lag={lag} samples ({ms(lag):.1f} ms)")
    assert peak >= 0.99
    assert lag == delay

    # An unrelated sentence, same voice and level, scores low both ways.
    p1, l1 = normalized_xcorr(ref, speech["other"].samples)
    p2, l2 = normalized_xcorr(other, speech["main"].samples)
    print(f"unrelated sentence: {p1:.3f} (lag {ms(l1):.1f} ms) / {p2:.3f} (lag {ms(l2):.1f} ms)")
    assert p1 < UNRELATED_MAX
    assert p2 < UNRELATED_MAX


async def test_baresip_call_to_sipp_echo(speech: dict[str, Speech], tmp_path: Path) -> None:
    """baresip calls a SIPp UAS with -rtp_echo; what baresip hears is its own speech."""
    require("baresip", "sipp")
    main = speech["main"]
    async with Sipp.uas_echo(tmp_path / "sipp") as uas:
        result = await Baresip(tmp_path / "baresip", main.path, uas.sip_port).run(CALL_TIMEOUT)
        result.check()
        code = await uas.wait(SIPP_EXIT_TIMEOUT)
    assert code == 0, f"sipp failed\n{uas.report()}\n{result.describe()}"
    assert result.close_reason and "end of file" in result.close_reason, result.describe()

    assert result.received_wav is not None and result.sent_wav is not None
    rate_in, heard = read_wav(result.received_wav)
    rate_out, sent = read_wav(result.sent_wav)
    assert rate_in == rate_out == RATE

    sent_peak, sent_lag = normalized_xcorr(main.ref, sent)
    peak, lag = normalized_xcorr(main.ref, heard)
    unrelated, _ = normalized_xcorr(speech["other"].ref, heard)
    print(
        f"\necho call: received vs sent speech peak={peak:.4f} lag={lag} samples "
        f"({ms(lag):.1f} ms; {ms(lag - main.offset):+.1f} ms vs the WAV's own offset)"
        f"\n  sent WAV vs speech: {sent_peak:.4f} (lag {ms(sent_lag):.1f} ms)"
        f"\n  received vs unrelated sentence: {unrelated:.3f}"
        f"\n  rtp packets sent/received: {result.rtp_packets_sent}/"
        f"{result.rtp_packets_received}; hang-up: {result.close_reason}"
    )
    assert sent_peak >= 0.99, result.describe()
    assert peak >= ECHO_MIN, result.failure(f"echo correlation {peak:.3f} < {ECHO_MIN}")
    assert unrelated < UNRELATED_MAX


UAS_PLAY_SCENARIO = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="uas that plays its own speech (raw mu-law) instead of echoing">
  <recv request="INVITE" crlf="true"/>
  <send><![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000

    ]]></send>
  <recv request="ACK" crlf="true"/>
  <nop><action><exec rtp_stream="ULAW_FILE,1,0"/></action></nop>
  <recv request="BYE"/>
  <send><![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]></send>
</scenario>
"""


@pytest.fixture
def other_ulaw(speech: dict[str, Speech], tmp_path: Path) -> Path:
    """The other sentence as raw mu-law, for SIPp's <exec rtp_stream>."""
    require("sox")
    ulaw = tmp_path / "other.ulaw"
    subprocess.run(
        [
            "sox",
            "-V1",
            str(speech["other"].path),
            "-t",
            "ul",
            "-r",
            str(RATE),
            "-c",
            "1",
            str(ulaw),
        ],
        check=True,
        timeout=30,
    )
    return ulaw


async def test_recordings_are_sent_and_received_audio(
    speech: dict[str, Speech], other_ulaw: Path, tmp_path: Path
) -> None:
    """baresip sends sentence A while SIPp plays sentence B: the received WAV is B, the sent
    WAV is A (an echo cannot tell the two recordings apart). Also dials a full SIP URI with
    another user and checks it on the wire."""
    require("baresip", "sipp")
    main, other = speech["main"], speech["other"]
    scenario = tmp_path / "uas_play.xml"
    scenario.write_text(UAS_PLAY_SCENARIO.replace("ULAW_FILE", str(other_ulaw)))

    async with Sipp.uas(tmp_path / "sipp", scenario=scenario) as uas:
        uri = uas.uri("sales")
        result = await Baresip(tmp_path / "baresip", main.path, uri).run(CALL_TIMEOUT)
        result.check()
        code = await uas.wait(SIPP_EXIT_TIMEOUT)
    assert code == 0, f"sipp failed\n{uas.report()}\n{result.describe()}"
    invites = re.findall(r"^INVITE (\S+) SIP/2\.0", uas.messages_path.read_text(), re.M)
    assert invites and invites[0] == uri, f"INVITE request-URIs seen by SIPp: {invites}"

    assert result.received_wav is not None and result.sent_wav is not None
    _, heard = read_wav(result.received_wav)
    _, sent = read_wav(result.sent_wav)
    heard_b, lag_b = normalized_xcorr(other.ref, heard)
    heard_a, _ = normalized_xcorr(main.ref, heard)
    sent_a, _ = normalized_xcorr(main.ref, sent)
    sent_b, _ = normalized_xcorr(other.ref, sent)
    print(
        f"\nplay call: received~B {heard_b:.4f} (lag {ms(lag_b):.1f} ms), received~A "
        f"{heard_a:.3f}, sent~A {sent_a:.4f}, sent~B {sent_b:.3f}"
    )
    assert heard_b >= ECHO_MIN, result.failure(f"received vs peer's speech {heard_b:.3f}")
    assert heard_a < UNRELATED_MAX
    assert sent_a >= 0.99
    assert sent_b < UNRELATED_MAX


async def test_failed_call_reports_log_tail(speech: dict[str, Speech], tmp_path: Path) -> None:
    """A call nobody answers: run() ends by its own deadline and check() carries the log."""
    require("baresip")
    dead_port = free_udp_port()  # nothing listens there
    bs = Baresip(tmp_path / "baresip", speech["main"].path, dead_port, max_call_seconds=2)
    result = await bs.run(timeout=5)
    print(f"\nunanswered call: {result.describe()}")
    assert not result.established
    assert result.timed_out  # baresip waits ~32 s for the INVITE transaction after -t
    with pytest.raises(PeerError) as info:
        result.check()
    message = str(info.value)
    assert "never established" in message
    assert f"connecting to 'sip:agent@127.0.0.1:{dead_port}'" in message
