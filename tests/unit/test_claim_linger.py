"""When the claim loop waits for more jobs before claiming again, and for how long at most."""

from __future__ import annotations

from realtime_glue.claim_linger import LONGEST, ClaimLinger


def claims_at(rate: float, seconds: float, linger: ClaimLinger, start: float = 0.0) -> list[float]:
    """One job claimed at a time, `rate` a second, for `seconds`; the waits decided."""
    count = int(rate * seconds)
    return [linger.claimed(1, start + n / rate) for n in range(count)]


def test_a_lone_job_is_not_followed_by_a_wait():
    assert ClaimLinger().claimed(1, 100.0) == 0.0


def test_a_trickle_of_jobs_never_waits():
    linger = ClaimLinger()
    assert set(claims_at(50, 2.0, linger)) == {0.0}


def test_at_everyday_rates_the_claim_waits_for_a_batch_but_no_longer_than_the_bound():
    linger = ClaimLinger()
    waits = claims_at(2_000, 0.5, linger)
    assert waits[-1] > 0  # at 2,000 a second a batch forms
    assert max(waits) <= LONGEST


def test_no_rate_makes_the_wait_longer_than_the_bound():
    for rate in (300, 1_000, 5_000, 100_000):
        linger = ClaimLinger(longest=0.004)
        assert max(claims_at(rate, 0.3, linger)) <= 0.004


def test_a_job_after_a_quiet_spell_does_not_wait_for_the_rate_that_was():
    linger = ClaimLinger()
    claims_at(2_000, 0.5, linger)
    assert linger.claimed(1, 0.5 + 1.0) == 0.0  # a second later: nothing suggests more are coming


def test_a_burst_claimed_at_once_is_not_mistaken_for_a_steady_rate():
    assert ClaimLinger().claimed(20, 10.0) == 0.0


def test_longest_zero_turns_it_off():
    linger = ClaimLinger(longest=0)
    assert set(claims_at(10_000, 0.2, linger)) == {0.0}


def test_a_longer_bound_waits_for_a_full_claim_up_to_that_bound():
    # At 2,000 jobs a second a full claim (64) takes 32 ms: the wait is the bound the operator set.
    for longest in (0.003, 0.010):
        assert claims_at(2_000, 0.5, ClaimLinger(longest=longest, target=64))[-1] == longest
    # At 100,000 a second 64 jobs come within 0.64 ms: no need to wait the whole 10 ms.
    assert claims_at(100_000, 0.25, ClaimLinger(longest=0.010, target=64))[-1] < 0.001
