"""Audio helpers for tests: WAV I/O, synthetic speech, and similarity by cross-correlation.

Pure numpy (plus the stdlib ``wave`` module); ``speech_wav`` shells out to ``espeak-ng`` and
``sox``. Received audio is checked against what was sent by normalised cross-correlation, not by
exact bytes: G.711, resampling and jitter buffers change samples but keep the waveform (echoed
speech scores 0.9-1.0, an unrelated sentence about 0.1).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np

__all__ = [
    "active_bounds",
    "active_span",
    "normalized_xcorr",
    "read_wav",
    "speech_wav",
    "write_wav",
]

#: espeak-ng voice and speed used by ``speech_wav`` (fixed so references are reproducible).
ESPEAK_VOICE = "en-us"
ESPEAK_SPEED_WPM = 150


def read_wav(path: str | Path) -> tuple[int, np.ndarray]:
    """Read a PCM WAV file and return ``(rate, samples)`` as a mono ``np.int16`` array.

    Multi-channel files yield their first channel. 8-bit (unsigned) and 32-bit PCM are
    converted to int16. A WAV whose header was never finalised (writer killed, data chunk size
    0) is read up to the end of the file.
    """
    path = Path(path)
    with wave.open(str(path), "rb") as w:
        rate = w.getframerate()
        channels = w.getnchannels()
        width = w.getsampwidth()
        raw = w.readframes(w.getnframes())
    if not raw:
        raw = _data_after_header(path)
    frame = channels * width
    raw = raw[: len(raw) - len(raw) % frame]
    if width == 2:
        data = np.frombuffer(raw, dtype="<i2")
    elif width == 1:
        data = ((np.frombuffer(raw, dtype=np.uint8).astype(np.int16) - 128) << 8).astype(np.int16)
    elif width == 4:
        data = (np.frombuffer(raw, dtype="<i4") >> 16).astype(np.int16)
    else:
        raise ValueError(f"{path}: unsupported sample width {width} bytes")
    if channels > 1:
        data = data.reshape(-1, channels)[:, 0]
    return rate, np.ascontiguousarray(data, dtype=np.int16)


def _data_after_header(path: Path) -> bytes:
    """Bytes after the ``data`` chunk header (for WAVs whose size fields were never written)."""
    blob = path.read_bytes()
    pos = blob.find(b"data", 12)
    return blob[pos + 8 :] if pos >= 0 else b""


def write_wav(path: str | Path, rate: int, samples: np.ndarray) -> Path:
    """Write mono 16-bit PCM. ``samples`` are int16 sample values (floats are rounded and
    clipped to the int16 range, not scaled)."""
    path = Path(path)
    data = np.asarray(samples)
    if data.ndim != 1:
        raise ValueError("write_wav expects a mono (1-D) array")
    if data.dtype != np.int16:
        data = np.clip(np.rint(data), -32768, 32767).astype(np.int16)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(rate))
        w.writeframes(data.astype("<i2").tobytes())
    return path


def speech_wav(
    path: str | Path,
    text: str,
    rate: int = 8000,
    lead_silence_s: float = 0.5,
    tail_silence_s: float = 4.0,
    *,
    voice: str = ESPEAK_VOICE,
    speed_wpm: int = ESPEAK_SPEED_WPM,
    peak_dbfs: float = -3.0,
) -> np.ndarray:
    """Synthesise ``text`` with espeak-ng and write it as a mono int16 WAV at ``rate``.

    espeak-ng writes its own WAV (22.05 kHz); sox converts it to ``rate`` mono 16-bit,
    peak-normalised to ``peak_dbfs`` without dither (silence stays digital zero, the output is
    deterministic). Then ``lead_silence_s`` and ``tail_silence_s`` of silence are added: the
    tail keeps a caller such as baresip on the line long enough to hear the reply, since
    baresip hangs up when its WAV source ends. Returns the final samples (padding included; use
    ``active_span`` to get the speech alone).
    """
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            raise FileNotFoundError(f"{tool} not found (run scripts/install-test-peers.sh)")
    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="speech-") as tmp:
        raw = Path(tmp) / "espeak.wav"
        conv = Path(tmp) / "conv.wav"
        _run(["espeak-ng", "-v", voice, "-s", str(speed_wpm), "-w", str(raw), "--", text])
        _run(
            [
                "sox",
                "-D",
                "-V1",
                str(raw),
                "-r",
                str(rate),
                "-c",
                "1",
                "-b",
                "16",
                "-e",
                "signed-integer",
                str(conv),
                "norm",
                str(peak_dbfs),
            ]
        )
        conv_rate, speech = read_wav(conv)
    if conv_rate != rate:
        raise RuntimeError(f"sox produced {conv_rate} Hz, expected {rate} Hz")
    lead = np.zeros(round(lead_silence_s * rate), dtype=np.int16)
    tail = np.zeros(round(tail_silence_s * rate), dtype=np.int16)
    samples = np.concatenate([lead, speech, tail])
    write_wav(path, rate, samples)
    return samples


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{cmd[0]} failed with exit code {proc.returncode}: {proc.stderr.strip()[-2000:]}"
        )


def _fast_len(n: int) -> int:
    """Smallest 2^a * 3^b * 5^c >= n (fast FFT size)."""
    best = 1 << max(0, (n - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def normalized_xcorr(ref: np.ndarray, sig: np.ndarray) -> tuple[float, int]:
    """Best normalised cross-correlation of ``ref`` within ``sig``: ``(peak, lag_samples)``.

    For every lag ``L`` (``sig`` delayed by ``L`` samples relative to ``ref``; ``L`` runs from
    ``-(len(ref)-1)`` to ``len(sig)-1``, so partial overlaps at either end count)::

        c(L) = sum_n ref[n] * sig[n + L] / sqrt(E_ref * E_sig(L))

    where ``E_ref`` is the energy of the whole of ``ref`` and ``E_sig(L)`` the energy of the
    window of ``sig`` that overlaps ``ref`` at that lag. By Cauchy-Schwarz ``|c| <= 1``; it is
    1.0 exactly when the window is a positively scaled copy of ``ref``, so a delayed,
    attenuated (or amplified) copy embedded in a longer recording scores ~1.0 whatever its
    level and whatever else the recording holds elsewhere; G.711 or resampling lower it only
    slightly (0.9-1.0); an unrelated sentence scores ~0.1. A copy cut short scores at most
    sqrt(fraction of ref's energy present). It is the signed cosine similarity (no mean
    removal): a polarity-inverted copy scores -1 and so does not count.

    Computed with FFTs (O(N log N)). Windows of ``sig`` that are essentially silent (energy
    below 1e-10 of the loudest window) are treated as that floor, so digital silence cannot
    produce spurious peaks from rounding. Returns ``(0.0, 0)`` if ``sig`` is silent or empty.
    ``lag_samples`` is where ``ref[0]`` falls in ``sig`` (divide by the rate for seconds).
    """
    r = np.asarray(ref, dtype=np.float64).ravel()
    s = np.asarray(sig, dtype=np.float64).ravel()
    m, n = len(r), len(s)
    if m == 0:
        raise ValueError("ref is empty")
    e_ref = float(np.dot(r, r))
    if e_ref <= 0.0:
        raise ValueError("ref is silent (zero energy)")
    if n == 0:
        return 0.0, 0

    size = _fast_len(m + n - 1)
    spec = np.fft.rfft(s, size) * np.conj(np.fft.rfft(r, size))
    circ = np.fft.irfft(spec, size)
    # Linear cross-correlation for lags -(m-1) .. n-1 (negative lags wrap to the end).
    num = np.concatenate([circ[size - (m - 1) :], circ[:n]]) if m > 1 else circ[:n].copy()
    lags = np.arange(-(m - 1), n)

    cum = np.concatenate([[0.0], np.cumsum(s * s)])
    lo = np.clip(lags, 0, n)
    hi = np.clip(lags + m, 0, n)
    e_win = cum[hi] - cum[lo]
    e_max = float(e_win.max())
    if e_max <= 0.0:
        return 0.0, 0
    e_win = np.maximum(e_win, e_max * 1e-10)

    corr = num / np.sqrt(e_ref * e_win)
    best = int(np.argmax(corr))
    peak = float(np.clip(corr[best], -1.0, 1.0))
    return peak, int(lags[best])


def active_bounds(
    samples: np.ndarray,
    rate: int,
    *,
    threshold_db: float = -40.0,
    frame_ms: float = 10.0,
    margin_ms: float = 20.0,
) -> tuple[int, int]:
    """``(start, end)`` sample indices of the active part of ``samples``.

    Frames of ``frame_ms`` whose RMS is within ``threshold_db`` of the loudest frame are active;
    the span runs from the first to the last active frame, widened by ``margin_ms`` on each
    side. Returns ``(0, 0)`` for silence or an empty array.
    """
    x = np.asarray(samples, dtype=np.float64).ravel()
    if x.size == 0:
        return 0, 0
    flen = max(1, round(rate * frame_ms / 1000))
    nframes = -(-x.size // flen)
    padded = np.zeros(nframes * flen)
    padded[: x.size] = x
    rms = np.sqrt((padded.reshape(nframes, flen) ** 2).mean(axis=1))
    top = float(rms.max())
    if top <= 0.0:
        return 0, 0
    active = np.flatnonzero(rms >= top * 10 ** (threshold_db / 20))
    margin = round(rate * margin_ms / 1000)
    start = max(0, int(active[0]) * flen - margin)
    end = min(x.size, (int(active[-1]) + 1) * flen + margin)
    return start, end


def active_span(samples: np.ndarray, rate: int, **kwargs: float) -> np.ndarray:
    """``samples`` with leading and trailing silence trimmed (see ``active_bounds``).

    Used to cut the reference speech out of a padded WAV before ``normalized_xcorr``.
    """
    start, end = active_bounds(samples, rate, **kwargs)
    return np.asarray(samples)[start:end]
