"""Judging times against a verifier's clock: one skew allowance for every check.

Clocks of departments, witnesses and verifiers differ a little. Every place that
compares a signed time with the verifier's clock allows :data:`CLOCK_SKEW` seconds
either way: a validity window is widened by it, and a signed time (a statement's
time, a witness cosignature's timestamp, a policy version's issue time) more than
:data:`CLOCK_SKEW` seconds ahead of the clock is refused with the ``future-time``
rule (:func:`check_not_future`) instead of being counted as fresh.
"""

from __future__ import annotations

from ledger.errors import MalformedError, PolicyError

__all__ = ["CLOCK_SKEW", "check_not_future"]

#: Seconds a signed time may lie ahead of the verifier's clock (and the allowance on
#: validity windows): five minutes.
CLOCK_SKEW = 300


def check_not_future(t: int, *, now: int, what: str, skew: int = CLOCK_SKEW) -> None:
    """PolicyError (``future-time``) if ``t`` is more than ``skew`` seconds after ``now``.

    ``what`` names the time in the message, e.g. ``"statement time"``.
    """
    if type(now) is not int or type(t) is not int:
        raise MalformedError(f"{what}: times must be Unix seconds")
    if type(skew) is not int or skew < 0:
        raise MalformedError(f"clock skew must be a non-negative number of seconds, not {skew!r}")
    if t > now + skew:
        raise PolicyError(
            f"future-time: the {what} is {t - now} s ahead of the verifier's clock; "
            f"at most {skew} s of clock skew is allowed (either the signer's clock or this "
            "device's clock is wrong)",
            rule="future-time",
        )
