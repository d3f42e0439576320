"""Real SIP/RTP peers for integration tests: baresip (a real phone) and SIPp, on loopback.

Everything binds 127.0.0.1 and every test gets its own ports (``free_udp_port``,
``free_port_block``): every failure seen with these tools was a port collision.

Typical use (asyncio tests; the project runs pytest-asyncio with ``asyncio_mode = "auto"``)::

    speech_wav(tmp_path / "speech.wav", "Hello there")          # tests/audio.py
    async with Sipp.uas_echo(tmp_path / "sipp") as uas:          # or the gateway's port
        result = await Baresip(tmp_path / "baresip", tmp_path / "speech.wav",
                               uas.sip_port).run(timeout=60)
        result.check()                                           # raises with the log tail
    rate, heard = read_wav(result.received_wav)

Install the peers with ``scripts/install-test-peers.sh`` (Debian: sip-tester, baresip-core,
espeak-ng, sox).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
import shutil
import signal
import socket
import sys
import wave
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "LOOPBACK",
    "Baresip",
    "BaresipResult",
    "PeerError",
    "Sipp",
    "free_port_block",
    "free_udp_port",
    "missing_peer_tools",
    "udp_port_bound",
    "wait_udp_bound",
]

LOOPBACK = "127.0.0.1"
# Ports handed out lately: free now, but promised to a peer that may not have bound them yet.
# ``free_udp_port(); free_port_block(4)`` in one SIPp command line once gave SIPp a SIP port
# inside its own media block (SIPp's video RTP then failed to bind: errno 98).
_HANDED_OUT: deque[int] = deque(maxlen=256)
TEMPLATE_DIR = Path(__file__).resolve().parent / "peer_configs" / "baresip"
BARESIP_MODULE_PATH = os.environ.get("BARESIP_MODULE_PATH", "/usr/lib/baresip/modules")


class PeerError(AssertionError):
    """A peer failed (did not start, timed out, or the call did not happen).

    An AssertionError so pytest shows the message (which carries the peer's log tail) as a
    test failure rather than an error in the harness.
    """


def missing_peer_tools(*tools: str) -> list[str]:
    """Names among ``tools`` (default: all the peers) not found on PATH."""
    wanted = tools or ("baresip", "sipp", "espeak-ng", "sox")
    return [t for t in wanted if shutil.which(t) is None]


# --------------------------------------------------------------------------------------------
# Ports
# --------------------------------------------------------------------------------------------


def _bindable(port: int, host: str, kind: int) -> bool:
    with socket.socket(socket.AF_INET, kind) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_udp_port(
    host: str = LOOPBACK, *, also_tcp: bool = False, tls_next: bool = False, attempts: int = 20
) -> int:
    """A UDP port on ``host`` that is free now (the kernel picks it: bind port 0).

    ``also_tcp`` also requires the same TCP port to be free (baresip's ``sip_listen`` binds
    both UDP and TCP); ``tls_next`` the TCP port after it too (baresip's SIP/TLS listener
    takes port + 1, and fails to start when that is taken). The port is released before
    returning, so there is a small window in which someone else could take it; the kernel
    hands out ephemeral ports at random, so collisions between parallel tests are unlikely.
    Within this process, no port is handed out twice while it is among the last 256 handed
    out here (this and ``free_port_block``): two picks for one command line never overlap.
    """
    for _ in range(attempts):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if also_tcp and not _bindable(port, host, socket.SOCK_STREAM):
            continue
        if tls_next and (port >= 65535 or not _bindable(port + 1, host, socket.SOCK_STREAM)):
            continue
        if port in _HANDED_OUT or (tls_next and port + 1 in _HANDED_OUT):
            continue
        _HANDED_OUT.extend((port, port + 1) if tls_next else (port,))
        return port
    raise RuntimeError(f"no free UDP{'+TCP' if also_tcp else ''} port on {host}")


def free_port_block(n: int, host: str = LOOPBACK, *, align: int = 2, attempts: int = 20) -> int:
    """First port of ``n`` consecutive UDP ports on ``host`` that are all free now.

    The block starts at a multiple of ``align`` (RTP wants an even port, RTCP the next odd
    one). It starts near a port the kernel chose (bind port 0), and every port of the block is
    checked by binding them all at once. Retries ``attempts`` times.
    """
    if n < 1:
        raise ValueError("n must be >= 1")
    for _ in range(attempts):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((host, 0))
            seed = s.getsockname()[1]
        base = seed - seed % align
        if base < 1024 or base + n - 1 > 65535:
            continue
        if any(port in _HANDED_OUT for port in range(base, base + n)):
            continue
        socks: list[socket.socket] = []
        try:
            for port in range(base, base + n):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(sock)
                sock.bind((host, port))
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
        _HANDED_OUT.extend(range(base, base + n))
        return base
    raise RuntimeError(f"no block of {n} free UDP ports on {host}")


def _proc_net_addr(host: str, port: int) -> tuple[str, str]:
    packed = socket.inet_aton(host)
    addr = f"{int.from_bytes(packed, sys.byteorder):08X}"
    return f"{addr}:{port:04X}", f"00000000:{port:04X}"


def _proc_net_rows(table: str) -> list[list[str]] | None:
    """The rows of /proc/net/``table`` (udp, tcp), split; None without /proc."""
    try:
        with open(f"/proc/net/{table}") as f:
            next(f, None)
            return [line.split() for line in f if line.strip()]
    except OSError:
        return None


def _udp_socket_inodes(port: int, host: str) -> set[str] | None:
    """Inodes of UDP sockets bound to ``host:port`` or ``0.0.0.0:port`` (None without /proc)."""
    wanted = _proc_net_addr(host, port)
    rows = _proc_net_rows("udp")
    if rows is None:
        return None
    return {row[9] for row in rows if len(row) > 9 and row[1] in wanted}


def _process_socket_inodes(pid: int) -> set[str]:
    inodes = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    with contextlib.suppress(OSError):
        for fd in fd_dir.iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    return inodes


def udp_port_bound(port: int, host: str = LOOPBACK, *, pid: int | None = None) -> bool:
    """True if UDP ``host:port`` (or ``0.0.0.0:port``) is bound, by process ``pid`` if given.

    Reads /proc/net/udp (and /proc/PID/fd): no side effect, whereas probing by binding could
    steal the port from the process we are waiting for, and a bare "is it bound" check would
    be satisfied by someone else holding the port. Falls back to a bind probe without /proc.
    """
    inodes = _udp_socket_inodes(port, host)
    if inodes is None:
        return not _bindable(port, host, socket.SOCK_DGRAM)
    if pid is None:
        return bool(inodes)
    return bool(inodes & _process_socket_inodes(pid))


def tcp_listening(port: int, host: str = LOOPBACK) -> bool:
    """True if a socket listens on TCP ``host:port`` (or ``0.0.0.0:port``): /proc/net/tcp's
    LISTEN state (0A), without connecting (a TLS peer would log a failed handshake)."""
    wanted = _proc_net_addr(host, port)
    rows = _proc_net_rows("tcp")
    if rows is None:
        return not _bindable(port, host, socket.SOCK_STREAM)
    return any(len(row) > 3 and row[1] in wanted and row[3] == "0A" for row in rows)


async def wait_udp_bound(
    ports: Sequence[int],
    *,
    timeout: float,
    host: str = LOOPBACK,
    proc: asyncio.subprocess.Process | None = None,
    what: str = "peer",
    listening: Sequence[int] = (),
) -> None:
    """Wait until ``proc`` (or anyone, without ``proc``) has bound every UDP port in
    ``ports``, and someone listens on every TCP port in ``listening``, polling /proc every
    20 ms.

    Raises ``PeerError`` if ``proc`` exits first or ``timeout`` seconds pass.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    pid = proc.pid if proc is not None else None
    while True:
        if all(udp_port_bound(p, host, pid=pid) for p in ports) and all(
            tcp_listening(p, host) for p in listening
        ):
            return
        if proc is not None and proc.returncode is not None:
            raise PeerError(f"{what} exited with code {proc.returncode} before binding {ports}")
        if loop.time() >= deadline:
            raise PeerError(
                f"{what} did not bind UDP {host}:{list(ports)} (and listen on TCP"
                f" {list(listening)}) within {timeout}s"
            )
        await asyncio.sleep(0.02)


async def _stop_process(
    proc: asyncio.subprocess.Process, timeout: float, *, term_twice: bool = False
) -> int | None:
    """SIGTERM ``proc`` (again after half the timeout if ``term_twice``), SIGKILL if it is
    still alive after ``timeout``. Returns the exit code."""
    if proc.returncode is not None:
        return proc.returncode
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    steps = [timeout / 2, timeout / 2] if term_twice else [timeout]
    for i, step in enumerate(steps):
        try:
            return await asyncio.wait_for(proc.wait(), step)
        except TimeoutError:
            if i + 1 < len(steps):
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    try:
        return await asyncio.wait_for(proc.wait(), 5)
    except TimeoutError:
        return None


def _tail_file(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"({path} not readable)"
    return "\n".join(_clean_lines(text)[-lines:])


_STATUS_LINE = re.compile(r"^\s*\[\d+:\d\d:\d\d\]\s+audio=")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _clean_lines(text: str, commands: Sequence[str] = ()) -> list[str]:
    """Split on CR/LF; drop ANSI codes, blank lines, baresip's per-100 ms status lines and the
    menu's keystroke-by-keystroke echo of the ``-e`` ``commands`` ("/", "/d", "/di", ...)."""
    out = []
    for line in re.split(r"[\r\n]+", _ANSI.sub("", text)):
        stripped = line.strip()
        if not stripped or _STATUS_LINE.match(line):
            continue
        if stripped.startswith("/") and any(c.startswith(stripped) for c in commands):
            continue
        out.append(line.rstrip())
    return out


# --------------------------------------------------------------------------------------------
# baresip
# --------------------------------------------------------------------------------------------

_ENDED = re.compile(r"session closed: |: Call with .* terminated \(")


@dataclass
class BaresipResult:
    """What a baresip run produced.

    ``received_wav`` is what baresip HEARD (sndfile's decoder dump, ``dump-<time>-dec.wav``)
    and ``sent_wav`` what it SENT (encoder dump, ``dump-<time>-enc.wav``); both are 8 kHz mono
    16-bit, or None if no call got media. ``log`` is stdout+stderr with the per-100 ms status
    lines removed (raw output stays in ``stdout_path``/``stderr_path``).
    """

    returncode: int | None
    received_wav: Path | None
    sent_wav: Path | None
    log: str
    workdir: Path
    stdout_path: Path
    stderr_path: Path
    uri: str
    established: bool
    call_ended: bool
    close_reason: str | None
    timed_out: bool
    rtp_packets_sent: int | None = None
    rtp_packets_received: int | None = None
    received_wavs: list[Path] = field(default_factory=list)
    sent_wavs: list[Path] = field(default_factory=list)

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.splitlines()[-lines:])

    def describe(self) -> str:
        return (
            f"baresip dialing {self.uri}: exit={self.returncode} timed_out={self.timed_out} "
            f"established={self.established} ended={self.call_ended} "
            f"reason={self.close_reason!r} rtp sent/recv={self.rtp_packets_sent}/"
            f"{self.rtp_packets_received} received_wav={self.received_wav} "
            f"sent_wav={self.sent_wav} (workdir {self.workdir})"
        )

    def failure(self, why: str, lines: int = 40) -> PeerError:
        return PeerError(
            f"{why}\n{self.describe()}\n--- baresip log (tail) ---\n{self.tail(lines)}"
        )

    def check(self, *, need_audio: bool = True) -> BaresipResult:
        """Raise ``PeerError`` (with the log tail) unless baresip exited cleanly after an
        established call and, with ``need_audio``, recorded non-empty sent and received WAVs."""
        problems = []
        if not self.established:
            problems.append("the call was never established")
        if self.timed_out:
            problems.append("baresip did not finish in time (stopped by signal)")
        elif self.returncode != 0:
            problems.append(f"baresip exited with code {self.returncode}")
        if problems:
            raise self.failure("; ".join(problems))
        if need_audio:
            for label, wav in (("received", self.received_wav), ("sent", self.sent_wav)):
                if wav is None:
                    raise self.failure(f"baresip wrote no {label} WAV (sndfile dump)")
                if _wav_frames(wav) == 0:
                    raise self.failure(f"the {label} WAV {wav} is empty")
        return self


def _wav_frames(path: Path) -> int:
    try:
        with wave.open(str(path), "rb") as w:
            return w.getnframes()
    except (OSError, EOFError, wave.Error):
        return 0


class Baresip:
    """baresip as a real caller: dials once, plays a WAV as its microphone, records both ways.

    Each instance renders its own config dir into ``workdir`` from
    ``tests/integration/peer_configs/baresip/{config,accounts}.in`` with per-test ports (SIP on
    ``caller_port``, RTP in a free 4-port block, never the fixed 10000-10100) and runs::

        baresip -f WORKDIR/config -e "/dial URI" -t MAX_CALL_SECONDS </dev/null

    with stdout/stderr in ``WORKDIR/baresip.stdout.log`` / ``baresip.stderr.log``.

    ``target`` is the gateway's port (dials ``sip:{user}@127.0.0.1:{port}``) or a full SIP URI
    (any user, e.g. ``sip:sales@127.0.0.1:5080``: the gateway routes by it).

    Recordings (the ``sndfile`` module, written to ``WORKDIR/rec``): per call
    ``dump-YYYY-MM-DD-HH-MM-SS-enc.wav`` is what baresip SENT (encoder side: aufile -> sndfile
    -> PCMU, i.e. the speech WAV exactly) and ``...-dec.wav`` is what it RECEIVED (decoder side:
    PCMU -> sndfile -> player). Checked by experiment: with SIPp playing sentence B while
    baresip sends sentence A, ``dec`` correlates 0.9999 with B and 0.06 with A. The decoder
    dump only holds frames of RTP packets that arrived, back to back: it starts at the first
    received packet and a pause in the incoming RTP leaves no silence in it, so offsets in it
    are not wall-clock times (a peer that stops sending for 2 s shows no gap).

    How the call ends (verified with SIPp's message trace):

    * When the speech WAV is exhausted, aufile reports "end of file", the menu module treats
      it as an audio error and hangs up with a BYE. So the WAV length (lead + speech + tail
      silence) is the call length: pad the tail to hear the other side's reply.
    * A remote BYE closes the call ("session closed: Connection reset by peer").
    * ``-t N``: after N s baresip runs ``ua_stop_all(forced=0)``: an established call gets a
      BYE, then baresip exits once the BYE transaction completes (or 32 s later if the peer
      never answers). A call still being set up (INVITE unanswered) holds the exit until the
      INVITE transaction times out (~32 s), hence ``run()``'s own deadline.
    * baresip exits 0 in every case, even if the call failed: check ``established``.
    * Otherwise baresip idles until ``-t`` after its call ended; with ``quit_on_call_end``
      (default) ``run()`` sends SIGTERM as soon as the log shows the call ended (baresip's
      handler runs the same graceful ``ua_stop_all``; a second SIGTERM makes it exit at once).
    """

    def __init__(
        self,
        workdir: str | Path,
        speech_wav: str | Path,
        target: int | str,
        *,
        user: str = "agent",
        caller_user: str = "caller",
        codecs: str = "PCMU",
        srate: int = 8000,
        max_call_seconds: float | None = None,
        quit_on_call_end: bool = True,
        caller_port: int | None = None,
        rtp_port_min: int | None = None,
        extra_config: Sequence[str] = (),
        answer: bool = False,
    ) -> None:
        """`answer`: a callee instead, that dials nothing and answers the first call to
        `caller_port` at once (the account's answermode=auto); `target` is then unused."""
        self.answer = answer
        self.workdir = Path(workdir).resolve()
        self.speech_wav = Path(speech_wav).resolve()
        if isinstance(target, int):
            self.uri = f"sip:{user}@{LOOPBACK}:{target}"
        else:
            if not target.startswith(("sip:", "sips:")):
                raise ValueError(f"target must be a port or a sip: URI, got {target!r}")
            self.uri = target
        self.caller_user = caller_user
        self.codecs = codecs
        self.srate = srate  # the microphone's and speaker's rate: 16000 for a wideband caller
        self.quit_on_call_end = quit_on_call_end
        if max_call_seconds is None:
            max_call_seconds = _wav_seconds(self.speech_wav) + 10.0
        self.max_call_seconds = max(1, math.ceil(max_call_seconds))
        self.caller_port = caller_port or free_udp_port(also_tcp=True, tls_next=True)
        self.rtp_port_min = rtp_port_min or free_port_block(4)
        self.rtp_port_max = self.rtp_port_min + 3
        self.extra_config = list(extra_config)

        self.config_dir = self.workdir / "config"
        self.rec_dir = self.workdir / "rec"
        self.stdout_path = self.workdir / "baresip.stdout.log"
        self.stderr_path = self.workdir / "baresip.stderr.log"
        self.proc: asyncio.subprocess.Process | None = None
        self._out: list[str] = []
        self._err: list[str] = []
        self._readers: list[asyncio.Task[None]] = []
        self._call_ended = asyncio.Event()
        self._timed_out = False

    # -- config --------------------------------------------------------------------------

    def write_config(self) -> Path:
        """Render the config dir (also done by ``start``). Returns its path."""
        for p in (self.speech_wav, self.workdir, self.rec_dir):
            if re.search(r"[\s,;]", str(p)):
                raise ValueError(f"baresip config cannot hold this path: {p!r}")
        if not self.speech_wav.is_file():
            raise FileNotFoundError(f"speech WAV not found: {self.speech_wav}")
        if not Path(BARESIP_MODULE_PATH, "sndfile.so").is_file():
            raise FileNotFoundError(
                f"baresip modules not found in {BARESIP_MODULE_PATH} (set BARESIP_MODULE_PATH "
                "or run scripts/install-test-peers.sh)"
            )
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.rec_dir.mkdir(parents=True, exist_ok=True)
        values = {
            "SPEECH_WAV": str(self.speech_wav),
            "REC_DIR": str(self.rec_dir),
            "CALLER_PORT": str(self.caller_port),
            "CALLER_USER": self.caller_user,
            "RTP_PORT_MIN": str(self.rtp_port_min),
            "RTP_PORT_MAX": str(self.rtp_port_max),
            "MODULE_PATH": BARESIP_MODULE_PATH,
            "AUDIO_CODECS": self.codecs,
            "AUDIO_SRATE": str(self.srate),
        }
        pattern = re.compile(r"\b(" + "|".join(values) + r")\b")
        for name in ("config", "accounts"):
            template = (TEMPLATE_DIR / f"{name}.in").read_text()
            lines = []
            for line in template.splitlines():
                # Leave comments alone: they mention the placeholders by name.
                lines.append(
                    line
                    if line.startswith("#")
                    else pattern.sub(lambda m: values[m.group(1)], line)
                )
            if name == "config":
                lines.extend(self.extra_config)
            elif self.answer:
                lines = [
                    f"{line};answermode=auto" if line.startswith("<") else line for line in lines
                ]
            (self.config_dir / name).write_text("\n".join(lines) + "\n")
        return self.config_dir

    @property
    def argv(self) -> list[str]:
        dial = [] if self.answer else ["-e", f"/dial {self.uri}"]
        return ["baresip", "-f", str(self.config_dir), *dial, "-t", str(self.max_call_seconds)]

    # -- process -------------------------------------------------------------------------

    async def start(self) -> None:
        """Write the config and start baresip (it dials at once)."""
        if self.proc is not None:
            raise RuntimeError("baresip already started")
        if shutil.which("baresip") is None:
            raise FileNotFoundError("baresip not found (run scripts/install-test-peers.sh)")
        self.write_config()
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=self.workdir,
            start_new_session=True,
        )
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._readers = [
            asyncio.create_task(self._pump(self.proc.stdout, self.stdout_path, self._out)),
            asyncio.create_task(self._pump(self.proc.stderr, self.stderr_path, self._err)),
        ]

    async def _pump(self, stream: asyncio.StreamReader, path: Path, sink: list[str]) -> None:
        """Copy a pipe to ``path`` and memory; set ``_call_ended`` when the log says so.

        Reads chunks, not lines: baresip's status line is rewritten with CR for the whole call.
        """
        tail = ""
        with path.open("wb") as f:
            while chunk := await stream.read(65536):
                f.write(chunk)
                f.flush()
                text = chunk.decode(errors="replace")
                sink.append(text)
                if not self._call_ended.is_set() and _ENDED.search(tail + text):
                    self._call_ended.set()
                tail = (tail + text)[-300:]

    async def wait(self, timeout: float) -> BaresipResult:
        """Wait for baresip to exit (SIGTERM once the call ended if ``quit_on_call_end``).

        After ``timeout`` seconds: SIGTERM, SIGTERM again, then SIGKILL; the result then has
        ``timed_out=True``. Never raises for a failed call: use ``BaresipResult.check()``.
        """
        if self.proc is None:
            raise RuntimeError("baresip not started")
        proc = self.proc
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            exited = asyncio.ensure_future(proc.wait())
            waiters: set[asyncio.Future[object]] = {exited}
            ended: asyncio.Future[object] | None = None
            if self.quit_on_call_end:
                ended = asyncio.ensure_future(self._call_ended.wait())
                waiters.add(ended)
            try:
                done, _ = await asyncio.wait(
                    waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                if ended is not None and not ended.done():
                    ended.cancel()
            if exited not in done:
                if ended is not None and ended in done:
                    # Call over: a graceful SIGTERM (BYE already sent or answered).
                    with contextlib.suppress(ProcessLookupError):
                        proc.send_signal(signal.SIGTERM)
                    remaining = max(1.0, deadline - loop.time())
                    try:
                        await asyncio.wait_for(asyncio.shield(exited), remaining)
                    except TimeoutError:
                        pass
                if not exited.done():
                    self._timed_out = True
                    await _stop_process(proc, 6.0, term_twice=True)
            with contextlib.suppress(asyncio.CancelledError):
                await exited
            # The pipes close when baresip exits; bounded in case a grandchild holds them.
            await asyncio.wait(self._readers, timeout=5)
        except BaseException:
            await self.stop()
            raise
        return self.result()

    async def run(self, timeout: float | None = None) -> BaresipResult:
        """``start()`` then ``wait(timeout)``; default timeout: ``max_call_seconds + 20``."""
        await self.start()
        return await self.wait(self.max_call_seconds + 20 if timeout is None else timeout)

    async def stop(self) -> None:
        """Stop baresip now if it still runs (SIGTERM twice, then SIGKILL)."""
        if self.proc is not None and self.proc.returncode is None:
            await _stop_process(self.proc, 6.0, term_twice=True)
        for task in self._readers:
            if not task.done():
                task.cancel()
        if self._readers:
            await asyncio.wait(self._readers, timeout=5)

    # -- result --------------------------------------------------------------------------

    def result(self) -> BaresipResult:
        raw = "".join(self._out) + "".join(self._err)
        log = "\n".join(_clean_lines(raw, [f"/dial {self.uri}"]))
        dec = sorted(self.rec_dir.glob("dump-*-dec.wav"))
        enc = sorted(self.rec_dir.glob("dump-*-enc.wav"))
        reason = None
        if m := re.search(r"session closed: (.+)", log):
            reason = m.group(1).strip()
        elif m := re.search(r"audio error \(([^)]*)\)", log):
            reason = f"audio source ended ({m.group(1)})"
        elif "terminated by signal" in log or "ua: stop all" in log:
            reason = "stopped by baresip (-t or signal)"
        packets = re.search(r"packets:\s+(\d+)\s+(\d+)", log)
        return BaresipResult(
            returncode=self.proc.returncode if self.proc else None,
            received_wav=dec[-1] if dec else None,
            sent_wav=enc[-1] if enc else None,
            log=log,
            workdir=self.workdir,
            stdout_path=self.stdout_path,
            stderr_path=self.stderr_path,
            uri=self.uri,
            established="Call established:" in log,
            call_ended=bool(_ENDED.search(log)),
            close_reason=reason,
            timed_out=self._timed_out,
            rtp_packets_sent=int(packets.group(1)) if packets else None,
            rtp_packets_received=int(packets.group(2)) if packets else None,
            received_wavs=dec,
            sent_wavs=enc,
        )


def _wav_seconds(path: Path) -> float:
    with wave.open(str(path), "rb") as w:
        return w.getnframes() / float(w.getframerate())


# --------------------------------------------------------------------------------------------
# SIPp
# --------------------------------------------------------------------------------------------


class Sipp:
    """Minimal SIPp runner: ``sipp -nostdin <args>`` as an asyncio subprocess.

    stdout/stderr (SIPp's screen) go to ``WORKDIR/sipp.stdout.log`` / ``sipp.stderr.log``; with
    ``trace`` (default) it also writes ``sipp.errors.log`` (-trace_err) and
    ``sipp.messages.log`` (-trace_msg, every SIP message). ``start()`` returns once SIPp has
    bound ``sip_port`` (and ``media_port`` if given), checked in /proc/net/udp.

    SIPp exits 0 when every call succeeded (with ``-m N``, after N calls). Remember that
    ``-rtp_echo`` binds both ``-mp`` and ``-mp``+2: ``uas_echo`` reserves a 4-port block.
    Use as ``async with``: ``stop()`` on exit.
    """

    def __init__(
        self,
        workdir: str | Path,
        args: Sequence[str | int],
        *,
        sip_port: int | None = None,
        media_port: int | None = None,
        trace: bool = True,
        name: str = "sipp",
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self.args = [str(a) for a in args]
        self.sip_port = sip_port
        self.media_port = media_port
        self.trace = trace
        self.name = name
        self.stdout_path = self.workdir / f"{name}.stdout.log"
        self.stderr_path = self.workdir / f"{name}.stderr.log"
        self.errors_path = self.workdir / f"{name}.errors.log"
        self.messages_path = self.workdir / f"{name}.messages.log"
        self.proc: asyncio.subprocess.Process | None = None

    @classmethod
    def uas(
        cls,
        workdir: str | Path,
        *,
        scenario: str | Path | None = None,
        rtp_echo: bool = False,
        calls: int = 1,
        extra_args: Sequence[str | int] = (),
        trace: bool = True,
        name: str = "sipp",
    ) -> Sipp:
        """A SIPp UAS on fresh loopback ports: the built-in ``uas`` scenario, or the XML
        ``scenario`` file. Media port: first of a free 4-port block."""
        sip_port = free_udp_port()
        media_port = free_port_block(4)
        args: list[str | int] = ["-sf", str(scenario)] if scenario else ["-sn", "uas"]
        if rtp_echo:
            args.append("-rtp_echo")
        args += ["-mp", media_port, "-p", sip_port, "-i", LOOPBACK, "-m", calls, *extra_args]
        return cls(workdir, args, sip_port=sip_port, media_port=media_port, trace=trace, name=name)

    @classmethod
    def uas_echo(cls, workdir: str | Path, *, calls: int = 1, trace: bool = True) -> Sipp:
        """``sipp -sn uas -rtp_echo -mp M -p P -i 127.0.0.1 -m calls``: answers and echoes RTP."""
        return cls.uas(workdir, rtp_echo=True, calls=calls, trace=trace)

    def uri(self, user: str = "agent") -> str:
        return f"sip:{user}@{LOOPBACK}:{self.sip_port}"

    @property
    def argv(self) -> list[str]:
        argv = ["sipp", "-nostdin", *self.args]
        if self.trace:
            argv += [
                "-trace_err",
                "-error_file",
                str(self.errors_path),
                "-trace_msg",
                "-message_file",
                str(self.messages_path),
            ]
        return argv

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode if self.proc else None

    async def start(self, ready_timeout: float = 15.0) -> Sipp:
        if self.proc is not None:
            raise RuntimeError("sipp already started")
        if shutil.which("sipp") is None:
            raise FileNotFoundError(
                "sipp not found (Debian package sip-tester; run scripts/install-test-peers.sh)"
            )
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=self.workdir,
                start_new_session=True,
            )
        ports = [p for p in (self.sip_port, self.media_port) if p is not None]
        if ports:
            try:
                await wait_udp_bound(ports, timeout=ready_timeout, proc=self.proc, what="sipp")
            except PeerError as exc:
                await self.stop()
                raise PeerError(f"{exc}\n{self.report()}") from None
        return self

    async def wait(self, timeout: float) -> int:
        """Wait for SIPp to exit by itself (e.g. after ``-m`` calls); returns its exit code.

        On timeout SIPp is stopped and ``PeerError`` raised with its logs."""
        if self.proc is None:
            raise RuntimeError("sipp not started")
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            await self.stop()
            raise PeerError(f"sipp did not exit within {timeout}s\n{self.report()}") from None

    async def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM, wait up to ``timeout``, then SIGKILL. Returns the exit code."""
        if self.proc is None:
            return None
        return await _stop_process(self.proc, timeout)

    def report(self, lines: int = 30) -> str:
        """Command line, exit code and the tails of SIPp's logs (for failure messages)."""
        parts = [f"{self.name}: {' '.join(self.argv)}", f"exit code: {self.returncode}"]
        for label, path in (
            ("errors", self.errors_path),
            ("screen", self.stdout_path),
            ("stderr", self.stderr_path),
            ("messages", self.messages_path),
        ):
            if path.exists() and path.stat().st_size:
                parts.append(f"--- {label} ({path}) ---\n{_tail_file(path, lines)}")
        return "\n".join(parts)

    async def __aenter__(self) -> Sipp:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
