"""Paired statistics of two variants trained on the same seeds: mean, spread and a Student-t interval.

Two training variants that share a seed share its baseline, data order and augmentation, so their
per-seed differences cancel most of the seed-to-seed noise; the study (``benchmarks/lns_fmnist.py``)
and the pipeline report compare variants through these differences. Pure Python (no torch, no
scipy): the t quantile comes from the regularised incomplete beta function.

    >>> from trainer.paired_stats import paired_difference, t_quantile
    >>> round(t_quantile(0.975, 2), 3)
    4.303
    >>> d = paired_difference([0.9, 0.8, 1.0], [0.5, 0.6, 0.7])  # candidate, control (same seeds)
    >>> d.n, round(d.mean, 4), round(d.std, 4), [round(v, 3) for v in d.ci95]
    (3, 0.3, 0.1, [0.052, 0.548])
    >>> d.excludes_zero
    True
    >>> one = paired_difference([0.9], [0.5])
    >>> one.std is None and one.ci95 is None, one.note.startswith("one seed")
    (True, True)
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass

ONE_SEED_NOTE = (
    "one seed: this is the difference of one pair of runs; with one seed neither its spread nor a "
    "confidence interval can be estimated, so it cannot say whether the variants differ beyond "
    "seed-to-seed noise (run several seeds, e.g. benchmarks/lns_fmnist.py)"
)


@dataclass(frozen=True)
class PairedDifference:
    """Per-seed differences ``candidate - control`` and what they say about the mean difference."""

    n: int
    differences: tuple[float, ...]
    mean: float
    std: float | None  # sample standard deviation (n - 1); None for one pair
    sem: float | None  # standard error of the mean, std / sqrt(n)
    ci95: tuple[float, float] | None  # mean -+ t(0.975, n - 1) * sem; None for one pair
    note: str

    @property
    def excludes_zero(self) -> bool:
        """True when the 95% interval lies entirely on one side of 0."""
        return self.ci95 is not None and (self.ci95[0] > 0 or self.ci95[1] < 0)

    def as_dict(self) -> dict:
        """JSON-ready fields (the interval as a list)."""
        fields = asdict(self)
        fields["differences"] = list(self.differences)
        fields["ci95"] = list(self.ci95) if self.ci95 is not None else None
        fields["excludes_zero"] = self.excludes_zero
        return fields


def paired_difference(
    candidate: Sequence[float], control: Sequence[float], confidence: float = 0.95
) -> PairedDifference:
    """Statistics of ``candidate[i] - control[i]`` (one pair per seed); ``confidence`` sets the interval."""
    if len(candidate) != len(control):
        raise ValueError(f"paired values need equal lengths, got {len(candidate)} and {len(control)}")
    if not candidate:
        raise ValueError("paired_difference needs at least one pair")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    differences = tuple(float(a) - float(b) for a, b in zip(candidate, control, strict=True))
    n, mean = len(differences), statistics.fmean(differences)
    if n == 1:
        return PairedDifference(1, differences, mean, None, None, None, ONE_SEED_NOTE)
    std = statistics.stdev(differences)
    sem = std / math.sqrt(n)
    half = t_quantile(0.5 + confidence / 2, n - 1) * sem
    note = (
        f"{n} seeds, Student-t interval with {n - 1} degrees of freedom"
        + ("" if n >= 5 else f"; with {n} seeds the interval is wide (t = {half / sem:.2f} standard errors)")
        if sem > 0
        else f"{n} seeds with identical differences: no spread"
    )
    return PairedDifference(n, differences, mean, std, sem, (mean - half, mean + half), note)


def t_quantile(probability: float, degrees_of_freedom: int) -> float:
    """The ``probability`` quantile of Student's t distribution (bisection on its CDF, to ~1e-12)."""
    if not 0.0 < probability < 1.0:
        raise ValueError(f"probability must be in (0, 1), got {probability}")
    if degrees_of_freedom < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {degrees_of_freedom}")
    if probability < 0.5:
        return -t_quantile(1.0 - probability, degrees_of_freedom)
    low, high = 0.0, 1.0
    while t_cdf(high, degrees_of_freedom) < probability:
        high *= 2.0
    for _ in range(200):
        middle = (low + high) / 2
        if t_cdf(middle, degrees_of_freedom) < probability:
            low = middle
        else:
            high = middle
        if high - low < 1e-12 * max(1.0, high):
            break
    return (low + high) / 2


def t_cdf(t: float, degrees_of_freedom: int) -> float:
    """P(T <= t) for Student's t with ``degrees_of_freedom``: ``1 - I_x(df/2, 1/2) / 2`` for t > 0."""
    df = float(degrees_of_freedom)
    tail = 0.5 * _regularized_beta(df / (df + t * t), df / 2.0, 0.5)
    return 1.0 - tail if t >= 0 else tail


def _regularized_beta(x: float, a: float, b: float) -> float:
    """I_x(a, b) by its continued fraction (modified Lentz; Numerical Recipes 6.4)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x > (a + 1.0) / (a + b + 2.0):  # the fraction converges fast only below this point
        return 1.0 - _regularized_beta(1.0 - x, b, a)
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 500):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return math.exp(log_front) * result / a
