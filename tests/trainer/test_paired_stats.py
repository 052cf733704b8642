"""Paired statistics: Student-t quantiles and paired differences on numbers known from tables."""

from __future__ import annotations

import math

import pytest

from trainer.paired_stats import paired_difference, t_cdf, t_quantile

# Two-sided 95% critical values t(0.975, df) from any Student-t table.
T_TABLE = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 9: 2.262, 19: 2.093, 29: 2.045, 120: 1.980}


@pytest.mark.parametrize(("df", "expected"), sorted(T_TABLE.items()))
def test_t_quantile_matches_the_table(df: int, expected: float) -> None:
    assert t_quantile(0.975, df) == pytest.approx(expected, abs=5e-4)


def test_t_distribution_known_values() -> None:
    assert t_cdf(0.0, 3) == 0.5
    assert t_cdf(1.0, 1) == pytest.approx(0.75)  # Cauchy: 1/2 + atan(1)/pi
    assert t_cdf(-1.0, 1) == pytest.approx(0.25)
    assert t_cdf(1.0, 2) == pytest.approx(0.5 + 1 / (2 * math.sqrt(3)))  # closed form for df = 2
    assert t_quantile(0.95, 10) == pytest.approx(1.812, abs=5e-4)
    assert t_quantile(0.025, 4) == pytest.approx(-2.776, abs=5e-4)
    assert t_quantile(0.975, 10_000) == pytest.approx(1.960, abs=1e-3)  # the normal limit


def test_paired_difference_on_known_numbers() -> None:
    # differences 1, 2, 3: mean 2, sample std 1, sem 1/sqrt(3), half width 4.303/sqrt(3) = 2.484
    result = paired_difference([11.0, 22.0, 33.0], [10.0, 20.0, 30.0])
    assert result.n == 3 and result.differences == (1.0, 2.0, 3.0)
    assert result.mean == pytest.approx(2.0) and result.std == pytest.approx(1.0)
    assert result.sem == pytest.approx(1 / math.sqrt(3))
    low, high = result.ci95
    assert low == pytest.approx(2 - 2.4842, abs=1e-3) and high == pytest.approx(2 + 2.4842, abs=1e-3)
    assert not result.excludes_zero  # 3 seeds cannot exclude 0 here
    assert "2 degrees of freedom" in result.note

    tight = paired_difference([0.4, 0.5, 0.6, 0.5], [0.0, 0.0, 0.0, 0.0])
    assert tight.excludes_zero and tight.ci95[0] > 0
    as_dict = tight.as_dict()
    assert as_dict["ci95"] == list(tight.ci95) and as_dict["excludes_zero"] is True


def test_one_seed_says_what_it_cannot_say() -> None:
    result = paired_difference([88.4], [88.1])
    assert result.mean == pytest.approx(0.3)
    assert result.std is None and result.sem is None and result.ci95 is None
    assert not result.excludes_zero
    assert "one seed" in result.note and "cannot say" in result.note


def test_identical_differences_have_no_spread() -> None:
    result = paired_difference([1.5, 2.5], [1.0, 2.0])
    assert result.std == 0.0 and result.ci95 == (0.5, 0.5) and "no spread" in result.note


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="equal lengths"):
        paired_difference([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="at least one pair"):
        paired_difference([], [])
    with pytest.raises(ValueError):
        t_quantile(1.0, 3)
    with pytest.raises(ValueError):
        t_quantile(0.9, 0)
