"""The warm transfer's steps (sans-I/O) and what it carries (headers, Refer-To)."""

from __future__ import annotations

from urllib.parse import unquote

import pytest

from gateway.bridge.warm_transfer import (
    Bridge,
    Brief,
    Dial,
    EndTarget,
    Finish,
    Hold,
    Refer,
    Resume,
    Step,
    Tell,
    WarmTransfer,
    target_outcome,
)
from gateway.sip.transfer_context import (
    context_headers,
    header_name,
    render,
    replaces_refer_to,
    sanitise,
)


def _answered() -> WarmTransfer:
    warm = WarmTransfer("sales", "sip:600@127.0.0.1", "wants a refund")
    assert warm.start() == [Hold()]
    assert warm.held(200) == [Dial("sip:600@127.0.0.1")]
    assert warm.target_answered(200, "OK") == [Brief("wants a refund")]
    return warm


def test_joined_by_refer() -> None:
    warm = _answered()
    assert warm.briefed() == [Refer()]
    commands = warm.referred(True, "200 OK")
    assert commands == [EndTarget(), Finish("joined_by_refer", "200 OK")]
    assert warm.step is Step.DONE and warm.outcome is not None and warm.outcome.ok


def test_refused_refer_bridges() -> None:
    warm = _answered()
    warm.briefed()
    commands = warm.referred(False, "405 Method Not Allowed")
    assert commands[0] == Bridge()
    assert isinstance(commands[1], Finish) and commands[1].outcome == "bridged"
    assert "405" in commands[1].detail
    assert warm.step is Step.BRIDGED
    assert warm.caller_hung_up() == []  # the bridge's own end, not the transfer's


@pytest.mark.parametrize(
    ("status", "outcome", "why"),
    [(486, "target_busy", "busy"), (603, "declined", "declined"), (480, "no_answer", "nobody")],
)
def test_target_refuses_caller_comes_back(status: int, outcome: str, why: str) -> None:
    warm = WarmTransfer("sales", "sip:600@127.0.0.1", "")
    warm.start()
    warm.held(200)
    assert warm.target_answered(status, "Nope") == [EndTarget(), Resume()]
    assert warm.step is Step.RESUMING
    tell, finish = warm.resumed(200)
    assert isinstance(tell, Tell) and why in tell.text and "sales" in tell.text
    assert finish == Finish(outcome, f"{status} Nope")
    assert not finish.ok


def test_ring_timeout_is_no_answer_and_timer_b_is_failed() -> None:
    assert target_outcome(487, cancelled=True) == "no_answer"
    assert target_outcome(408, local=True) == "no_answer"
    assert target_outcome(503, local=True) == "failed"
    assert target_outcome(500) == "failed"
    assert target_outcome(600) == "target_busy"


def test_hold_refused_goes_on_dialog_gone_fails() -> None:
    warm = WarmTransfer("sales", "sip:600@h", "")
    warm.start()
    assert warm.held(488) == [Dial("sip:600@h")]
    gone = WarmTransfer("sales", "sip:600@h", "")
    gone.start()
    (finish,) = gone.held(481)
    assert isinstance(finish, Finish) and finish.outcome == "failed"
    assert gone.held(200) == []  # nothing after the end


def test_target_hangs_up_while_briefed() -> None:
    warm = _answered()
    assert warm.target_hung_up() == [EndTarget(), Resume()]
    tell, finish = warm.resumed(200)
    assert isinstance(tell, Tell) and isinstance(finish, Finish) and finish.outcome == "failed"


def test_caller_leaves_while_target_rings() -> None:
    warm = WarmTransfer("sales", "sip:600@h", "")
    warm.start()
    warm.held(200)
    end, finish = warm.caller_hung_up()
    assert end == EndTarget() and isinstance(finish, Finish) and finish.outcome == "failed"
    # the target's late 200 gets a BYE, nothing else
    assert warm.target_answered(200, "OK") == [EndTarget()]
    assert warm.caller_hung_up() == []


def test_out_of_order_inputs_are_ignored() -> None:
    warm = WarmTransfer("sales", "sip:600@h", "")
    assert warm.briefed() == [] and warm.referred(True, "") == [] and warm.resumed(200) == []
    assert warm.target_hung_up() == []


# --- what travels ---------------------------------------------------------------------------


def test_sanitise_removes_line_breaks_and_bounds() -> None:
    hostile = "fine\r\nVia: SIP/2.0/UDP evil\r\n\r\nINVITE sip:x"
    clean = sanitise(hostile)
    assert "\r" not in clean and "\n" not in clean
    assert clean.startswith("fine Via:")
    assert len(sanitise("x" * 5000)) == 512
    assert sanitise("\x00\t a \x7f") == "a"


def test_render_substitutes_sanitised_variables() -> None:
    text = render("${summary} / ${caller} / ${nope}", {"summary": "a\r\nb", "caller": "+4930"})
    assert text == "a b / +4930 /"


def test_context_headers_user_to_user_is_hex() -> None:
    headers = context_headers(
        {"X-Call-Summary": "${summary}", "User-to-User": "${summary}", "X-Empty": "${none}"},
        {"summary": "refund\r\nX-Evil: 1"},
    )
    assert headers["X-Call-Summary"] == "refund X-Evil: 1"
    value, param = headers["User-to-User"].split(";")
    assert param == "encoding=hex"
    assert bytes.fromhex(value).decode() == "refund X-Evil: 1"
    assert "X-Empty" not in headers


@pytest.mark.parametrize("name", ["Via", "call-id", "Refer-To", "X Bad", "X:Bad", ""])
def test_header_names_refused(name: str) -> None:
    with pytest.raises(ValueError):
        header_name(name)


def test_replaces_refer_to_is_escaped() -> None:
    refer_to = replaces_refer_to("sip:600@127.0.0.1:5070", "abc@host", "t1", "f2")
    assert refer_to.startswith("<sip:600@127.0.0.1:5070?Replaces=")
    assert refer_to.endswith(">")
    escaped = refer_to[len("<sip:600@127.0.0.1:5070?Replaces=") : -1]
    assert "@" not in escaped and ";" not in escaped and "=" not in escaped
    assert unquote(escaped) == "abc@host;to-tag=t1;from-tag=f2"
    with pytest.raises(ValueError):
        replaces_refer_to("sip:600@h", "abc\r\nX: y", "t1", "f2")


# --- music on hold --------------------------------------------------------------------------


def test_hold_music_resampled_and_looped(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import wave

    import numpy as np

    from gateway.media.hold_music import HoldMusic, HoldMusicError, hold_samples, read_wav

    path = tmp_path / "moh.wav"
    tone = (np.sin(2 * np.pi * 440 * np.arange(44100) / 44100) * 8000).astype(np.int16)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(44100)
        wav.writeframes(tone.tobytes())
    samples = hold_samples(str(path), 8000)
    assert abs(samples.size - 8000) <= 2  # one second at the codec's rate
    spectrum = np.abs(np.fft.rfft(samples[:8000].astype(float)))
    assert abs(int(np.argmax(spectrum)) * 8000 / 8000 - 440) <= 2
    music = HoldMusic(samples, 160)
    frames = [music.next_frame() for _ in range(120)]  # 2.4 s: it loops
    assert all(f.size == 160 and f.dtype == np.int16 for f in frames)
    assert np.array_equal(frames[0], samples[:160])
    assert read_wav.cache_info().currsize >= 1
    stereo = tmp_path / "stereo.wav"
    with wave.open(str(stereo), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(b"\0" * 400)
    with pytest.raises(HoldMusicError):
        hold_samples(str(stereo), 8000)
    default = hold_samples(None, 16000)
    assert default.size == 32000 and 0 < np.abs(default).max() < 4000  # soft


def test_music_on_hold_read_at_start(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A file that cannot be used stops the start, naming the key."""
    from gateway.config import GatewayConfig
    from gateway.startup import StartupError, hold_music_readable

    bad = tmp_path / "hold.wav"
    bad.write_bytes(b"not a wav")
    data = {"realtime": {"url": "wss://x.example/openai/v1/realtime"}}
    cfg = GatewayConfig.model_validate({**data, "agent": {"transfer": {"music_on_hold": str(bad)}}})
    with pytest.raises(StartupError, match=r"agent\.transfer\.music_on_hold"):
        hold_music_readable(cfg)
    hold_music_readable(GatewayConfig.model_validate(data))  # none configured: nothing read


def test_relay_keeps_frames_in_hand() -> None:
    """The bridge's relay plays once RELAY_PREFILL frames wait, and again after running dry;
    a backlog beyond RELAY_FRAMES drops the oldest."""
    from gateway.bridge.transfers import RELAY_FRAMES, RELAY_PREFILL, Relay
    from gateway.media.g711 import PCMU

    relay = Relay(PCMU)
    packet = bytes([0x7F]) * 160
    for _ in range(RELAY_PREFILL - 1):
        relay.heard(packet)
    assert relay.next_frame() is None
    relay.heard(packet)
    played = [relay.next_frame() for _ in range(RELAY_PREFILL)]
    assert all(f is not None and f.size == 160 for f in played)
    assert relay.next_frame() is None  # dry: waits for the prefill again
    relay.heard(packet)
    assert relay.next_frame() is None
    for _ in range(RELAY_FRAMES + 5):
        relay.heard(packet)
    assert len(relay.frames) == RELAY_FRAMES


# --- the tool's arguments -------------------------------------------------------------------


class WarmControl:
    def __init__(self) -> None:
        self.asked: list[tuple[str, ...]] = []

    def hang_up_after_playback(self) -> None: ...

    def transfer_after_playback(
        self, call, destination, target, mode="blind", summary=""
    ) -> str | None:  # type: ignore[no-untyped-def]
        self.asked.append((destination, target, mode, summary))
        return None

    def send_keys(self, digits: str) -> str:
        raise ValueError("no")


def test_tool_takes_mode_and_a_sanitised_summary() -> None:
    from gateway.bridge.tools import ToolCall, ask_transfer
    from gateway.config import TransferTool

    spec = TransferTool(targets={"sales": "sip:600@pbx.example"}, mode="warm")
    control = WarmControl()
    call = ToolCall("c1", "transfer_call", "")
    hostile = "refund\r\nX-Evil: 1" + "x" * 2000
    assert ask_transfer(call, spec, {"destination": "sales", "summary": hostile}, control) is None
    (destination, target, mode, summary) = control.asked[-1]
    assert (destination, target, mode) == ("sales", "sip:600@pbx.example", "warm")  # default
    assert "\r" not in summary and "\n" not in summary and len(summary) == 1000
    ask_transfer(call, spec, {"destination": "sales", "mode": "blind", "summary": "s"}, control)
    assert control.asked[-1][2:] == ("blind", "s")
    refused = ask_transfer(call, spec, {"destination": "sales", "mode": "later"}, control)
    assert refused is not None and "mode must be" in refused
    refused = ask_transfer(call, spec, {"destination": "sales", "summary": 3}, control)
    assert refused is not None and "summary" in refused
