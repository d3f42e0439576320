"""Scalar pure-Python ports of G.711 reference code, one sample at a time.

Deliberately independent of ``gateway.media.g711``: these functions generate the golden files
and explain where other implementations differ.  Nothing here is vectorised or clever; each
function follows its C original line by line (C's ``>>`` on a negative int is arithmetic, as is
Python's, and C ``short`` never overflows on these paths).

* ``itu_*``: ITU-T G.191 Software Tool Library, ``g711.c`` (``alaw_compress``,
  ``ulaw_compress``, ``alaw_expand``, ``ulaw_expand``), the ITU's reference for G.711.
  The golden files follow these.
* ``sun_*``: the classic Sun Microsystems ``g711.c`` on 16-bit samples (µ-law BIAS 0x84, with
  the CLIP 32635 of Craig Reese's version; A-law with the 0x55 toggle and ``-pcm_val - 8``).
  Kept to document, in a test, exactly where it departs from G.191.
"""

from __future__ import annotations

# --- ITU-T G.191 -------------------------------------------------------------------------------


def itu_ulaw_compress(x: int) -> int:
    """ITU-T G.191 ``ulaw_compress`` for one int16 sample."""
    # 14-bit magnitude; one's complement for negatives; 33 = µ-law bias on the 14-bit scale
    absno = ((~x) >> 2) + 33 if x < 0 else (x >> 2) + 33
    if absno > 0x1FFF:
        absno = 0x1FFF
    i = absno >> 6
    segno = 1
    while i != 0:
        segno += 1
        i >>= 1
    high_nibble = 0x0008 - segno
    low_nibble = 0x000F - ((absno >> segno) & 0x000F)
    code = (high_nibble << 4) | low_nibble
    if x >= 0:
        code |= 0x0080
    return code


def itu_alaw_compress(x: int) -> int:
    """ITU-T G.191 ``alaw_compress`` for one int16 sample."""
    ix = (~x) >> 4 if x < 0 else x >> 4  # 0 <= ix < 2048, one's complement for negatives
    if ix > 15:
        iexp = 1
        while ix > 16 + 15:
            ix >>= 1
            iexp += 1
        ix -= 16
        ix += iexp << 4
    if x >= 0:
        ix |= 0x0080
    return ix ^ 0x0055


def itu_ulaw_expand(code: int) -> int:
    """ITU-T G.191 ``ulaw_expand`` for one code byte (0..255)."""
    sign = -1 if code < 0x0080 else 1
    mantissa = ~code
    exponent = (mantissa >> 4) & 0x0007
    segment = exponent + 1
    mantissa &= 0x000F
    step = 4 << segment
    return sign * ((0x0080 << exponent) + step * mantissa + step // 2 - 4 * 33)


def itu_alaw_expand(code: int) -> int:
    """ITU-T G.191 ``alaw_expand`` for one code byte (0..255)."""
    ix = (code ^ 0x0055) & 0x007F
    iexp = ix >> 4
    mant = ix & 0x000F
    if iexp > 0:
        mant += 16
    mant = (mant << 4) + 0x0008
    if iexp > 1:
        mant <<= iexp - 1
    return mant if code > 127 else -mant


# --- classic Sun g711.c (16-bit) ---------------------------------------------------------------

_SEG_END = (0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF, 0x3FFF, 0x7FFF)


def _search(val: int) -> int:
    for i, end in enumerate(_SEG_END):
        if val <= end:
            return i
    return len(_SEG_END)


def sun_linear2ulaw(x: int) -> int:
    """Classic ``linear2ulaw`` (BIAS 0x84, CLIP 32635): magnitude is ``-x``, two's complement."""
    if x < 0:
        x = -x
        mask = 0x7F
    else:
        mask = 0xFF
    x = min(x, 32635) + 0x84
    seg = _search(x)
    if seg >= 8:
        return 0x7F ^ mask
    return ((seg << 4) | ((x >> (seg + 3)) & 0xF)) ^ mask


def sun_linear2alaw(x: int) -> int:
    """Classic ``linear2alaw``: magnitude is ``-x - 8`` (negative for x in -7..-1)."""
    if x >= 0:
        mask = 0xD5
    else:
        mask = 0x55
        x = -x - 8
    seg = _search(x)
    if seg >= 8:
        return 0x7F ^ mask
    aval = seg << 4
    aval |= ((x >> 4) if seg < 2 else (x >> (seg + 3))) & 0xF
    return aval ^ mask


def sun_ulaw2linear(code: int) -> int:
    """Classic ``ulaw2linear``."""
    u = ~code & 0xFF
    t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    return (0x84 - t) if u & 0x80 else (t - 0x84)


def sun_alaw2linear(code: int) -> int:
    """Classic ``alaw2linear``."""
    a = code ^ 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    if seg == 0:
        t += 8
    elif seg == 1:
        t += 0x108
    else:
        t = (t + 0x108) << (seg - 1)
    return t if a & 0x80 else -t
