"""Write the G.711 golden vectors from the scalar ITU-T G.191 port (stdlib only).

Run once from anywhere: ``python tests/data/g711/make_golden.py``.  Output, all little-endian:

* ``pcmu_encode_all.bin`` / ``pcma_encode_all.bin``: 65536 code bytes, byte ``i`` is the code
  for the int16 sample ``i - 32768`` (every input, ascending).
* ``log_sweep_s16le.bin``: int16 inputs with log-spaced magnitudes 1..32768, both signs and 0.
* ``pcmu_encode_log.bin`` / ``pcma_encode_log.bin``: one code byte per log-sweep sample.
* ``pcmu_decode.bin`` / ``pcma_decode.bin``: 256 int16, entry ``c`` decodes code byte ``c``.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from g711_reference import (  # noqa: E402
    itu_alaw_compress,
    itu_alaw_expand,
    itu_ulaw_compress,
    itu_ulaw_expand,
)

LOG_POINTS = 1024


def log_sweep() -> list[int]:
    """Magnitudes 32768**(i/1023) rounded, deduplicated, mirrored; clipped to int16."""
    mags = sorted({round(32768 ** (i / (LOG_POINTS - 1))) for i in range(LOG_POINTS)})
    return [-m for m in reversed(mags)] + [0] + [min(m, 32767) for m in mags]


def main() -> None:
    every = range(-32768, 32768)
    sweep = log_sweep()
    files = {
        "pcmu_encode_all.bin": bytes(itu_ulaw_compress(x) for x in every),
        "pcma_encode_all.bin": bytes(itu_alaw_compress(x) for x in every),
        "log_sweep_s16le.bin": struct.pack(f"<{len(sweep)}h", *sweep),
        "pcmu_encode_log.bin": bytes(itu_ulaw_compress(x) for x in sweep),
        "pcma_encode_log.bin": bytes(itu_alaw_compress(x) for x in sweep),
        "pcmu_decode.bin": struct.pack("<256h", *(itu_ulaw_expand(c) for c in range(256))),
        "pcma_decode.bin": struct.pack("<256h", *(itu_alaw_expand(c) for c in range(256))),
    }
    for name, data in files.items():
        (HERE / name).write_bytes(data)
        print(f"{name}: {len(data)} bytes")


if __name__ == "__main__":
    main()
