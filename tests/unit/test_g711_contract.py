"""What G.711 promises beyond the golden vectors: shared tables nobody can write to, and
refusals that say what was wrong (the operator reads them in a config or call error)."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.media.g711 import PCMA, PCMU, codec_by_name, codec_by_payload_type


@pytest.mark.parametrize("codec", [PCMU, PCMA])
def test_the_shared_tables_are_read_only(codec) -> None:
    """One instance serves every call: a caller writing into a table would corrupt them all."""
    with pytest.raises(ValueError, match="read-only"):
        codec._encode_lut[0] = 0
    with pytest.raises(ValueError, match="read-only"):
        codec._decode_lut[0] = 0


def test_encode_refusal_names_what_it_got() -> None:
    with pytest.raises(TypeError, match=r"^PCMU\.encode expects an int16 ndarray, got list$"):
        PCMU.encode([0, 1])
    with pytest.raises(TypeError, match=r"got ndarray of float32$"):
        PCMA.encode(np.zeros(4, dtype=np.float32))


def test_a_name_that_is_not_text_is_refused_as_unsupported() -> None:
    with pytest.raises(ValueError, match="unsupported codec 8"):
        codec_by_name(8)  # type: ignore[arg-type]


def test_payload_type_refusal_lists_the_supported_ones() -> None:
    with pytest.raises(ValueError, match=r"supported are 0 \(PCMU\), 8 \(PCMA\)$"):
        codec_by_payload_type(9)
