"""Scanner and keyboard input checks, and the per-client token bucket."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.credential.base45 import ALPHABET
from ledger.errors import MalformedError
from verifier.ratelimit import RateLimiter
from verifier.textinput import clean_text, mangled_reason


def _wide(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


@given(st.text(alphabet=ALPHABET, max_size=200))
def test_base45_text_after_the_prefix_is_never_mangled(tail: str) -> None:
    assert mangled_reason("CL1:" + tail) is None


@given(st.text(alphabet=ALPHABET.replace(" ", ""), min_size=1, max_size=200).filter(lambda t: t.strip()))
def test_full_width_forms_from_an_input_method_are_mangled(tail: str) -> None:
    reason = mangled_reason(_wide("CL1:" + tail))
    assert reason is not None
    assert reason[0].startswith("输入被改动") and "input method" in reason[1]


@given(st.text(max_size=100))
def test_text_that_is_not_meant_as_a_code_is_not_called_mangled(text: str) -> None:
    if not text.upper().startswith("CL1") and _wide("CL1") not in text:
        assert mangled_reason(text) is None or "CL1:" in text.upper()


def test_clean_text_trims_line_ends_and_bom_but_keeps_spaces() -> None:
    assert clean_text("\ufeffCL1:AB C \r\n") == "CL1:AB C "
    assert clean_text("\tCL1:X\n\n") == "CL1:X"


def test_bucket_allows_a_burst_then_refills_at_the_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(rate=2.0, burst=3, clock=lambda: now[0])
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a") == pytest.approx(0.5)
    assert limiter.take("b") == 0.0  # one bucket per client
    now[0] += 0.5
    assert limiter.take("a") == 0.0
    assert limiter.retry_after(0.01) == "1" and limiter.retry_after(2.2) == "3"


def test_bucket_memory_is_bounded() -> None:
    limiter = RateLimiter(rate=1.0, burst=1, max_clients=100, clock=lambda: 0.0)
    for i in range(1000):
        limiter.take(f"10.0.{i // 256}.{i % 256}")
    assert len(limiter._buckets) == 100


def test_bucket_parameters_are_checked() -> None:
    with pytest.raises(MalformedError, match="rate must be positive"):
        RateLimiter(rate=0, burst=1)
