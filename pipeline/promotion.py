"""Who holds the champion alias: a challenger wins only a fair comparison, decided by pure rules.

Fair: the current champion is scored again on the challenger's test pairs at the same threshold (recorded
numbers may come from other data or another threshold), and the challenger must win by more than noise: a
paired bootstrap over the test pairs gives the 95% interval of the metric's difference, which must lie above 0.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import stats

from pipeline.metrics import f1_at


@dataclass(frozen=True)
class Comparison:
    """The challenger and the champion on the same test pairs, and the interval of their difference."""

    metric: str
    challenger: float
    champion: float  # re-scored now, on the challenger's pairs and threshold
    low: float  # the interval of challenger - champion
    high: float
    confidence: float
    samples: int
    pairs: int
    threshold: float

    def describe(self) -> str:
        return (
            f"{self.metric} {self.challenger:.4f} vs {self.champion:.4f} on the same {self.pairs} test pairs at threshold "
            f"{self.threshold:g}; {self.confidence:.0%} interval of the difference [{self.low:+.4f}, {self.high:+.4f}]"
        )


@dataclass(frozen=True)
class ChampionDecision:
    """Whether the new version takes the alias, and the comparison that decided it."""

    promote: bool
    reason: str
    new_value: float
    current_version: str | None
    comparison: Comparison | None = None


def metric_value(metric: str, gold: np.ndarray, predicted: np.ndarray, threshold: float) -> float:
    """One test metric (f1 at the threshold, pearson, spearman); NaN where a correlation is undefined."""
    if metric == "f1":
        return f1_at(gold, predicted, threshold)
    if np.ptp(predicted) == 0 or np.ptp(gold) == 0:
        return float("nan")
    if metric == "pearson":
        return float(np.corrcoef(gold, predicted)[0, 1])
    return float(stats.spearmanr(gold, predicted).statistic)


def paired_bootstrap(
    gold: np.ndarray,
    challenger: np.ndarray,
    champion: np.ndarray,
    metric: str,
    threshold: float,
    samples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Comparison:
    """Resample the test pairs with replacement (the same pairs for both models) and take the central interval
    of the metric's difference; resamples where a correlation is undefined are dropped."""
    rng = np.random.default_rng(seed)
    differences = []
    for _ in range(samples):
        pick = rng.integers(0, len(gold), len(gold))
        ours, theirs = (metric_value(metric, gold[pick], scores[pick], threshold) for scores in (challenger, champion))
        differences.append(ours - theirs)
    finite = np.array([value for value in differences if np.isfinite(value)])
    tail = (1 - confidence) / 2
    low, high = np.quantile(finite, [tail, 1 - tail]) if len(finite) else (float("nan"), float("nan"))
    return Comparison(
        metric=metric,
        challenger=metric_value(metric, gold, challenger, threshold),
        champion=metric_value(metric, gold, champion, threshold),
        low=float(low),
        high=float(high),
        confidence=confidence,
        samples=len(finite),
        pairs=len(gold),
        threshold=threshold,
    )


def decide_champion(
    new_value: float, current_version: str | None, comparison: Comparison | None, refusal: str | None
) -> ChampionDecision:
    """First registration promotes; otherwise the challenger needs a comparison whose interval lies above 0.

    refusal: why the champion could not be re-scored on the challenger's pairs (then nothing is compared and the
    alias stays: recorded numbers from other data or another threshold are no evidence).
    """
    if current_version is None:
        return ChampionDecision(True, "first registration: no champion yet", new_value, None)
    if refusal is not None or comparison is None:
        reason = f"not compared with champion v{current_version}: {refusal or 'no comparison'}; the alias stays"
        return ChampionDecision(False, reason, new_value, current_version)
    if comparison.low > 0:
        reason = f"beats champion v{current_version}: {comparison.describe()}, above 0"
        return ChampionDecision(True, reason, new_value, current_version, comparison)
    reason = f"does not beat champion v{current_version} beyond noise: {comparison.describe()}, not above 0"
    return ChampionDecision(False, reason, new_value, current_version, comparison)


def outside_experiments(decision: ChampionDecision, experiment: str | None, promote_experiments: bool) -> ChampionDecision:
    """A `dvc exp run` experiment registers its model but leaves the production alias alone unless params allow it."""
    if experiment is None or promote_experiments or not decision.promote:
        return decision
    reason = f"DVC experiment {experiment}: registered, alias not moved (register.promote_experiments is false)"
    return replace(decision, promote=False, reason=f"{reason}; else: {decision.reason}")


def within_latency_budget(decision: ChampionDecision, p95_ms: float, budget_ms: float | None) -> ChampionDecision:
    """A model over register.max_p95_ms (one pair, the packaged runtime) never takes the alias, however good."""
    if budget_ms is None or p95_ms <= budget_ms or not decision.promote:
        return decision
    reason = f"over the latency budget: p95 {p95_ms:.1f} ms for one pair > register.max_p95_ms {budget_ms:g}"
    return replace(decision, promote=False, reason=f"{reason} (else: {decision.reason})")
