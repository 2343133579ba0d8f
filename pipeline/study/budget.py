"""The trial budget: how many trials the study wants, how many are finished, and who runs the rest."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TrialBudget:
    """study.n_trials against the finished (complete or pruned) trials in storage, split over local workers.

    Counting in storage (not in one process) is what lets a resumed or parallel study stop at the total.
    """

    target: int  # study.n_trials
    finished: int  # complete and pruned trials in storage (failed ones are retried)
    workers: int = 1  # study.workers: local processes that may share the missing trials

    @property
    def missing(self) -> int:
        return max(0, self.target - self.finished)

    @property
    def complete(self) -> bool:
        return self.finished >= self.target

    @property
    def worker_count(self) -> int:
        """Local workers worth starting: no more than the missing trials."""
        return min(self.workers, self.missing)

    def quota(self, worker_index: int) -> int:
        """Worker worker_index's share of the missing trials: together the workers run exactly `missing`."""
        workers = max(1, self.worker_count)
        return self.missing // workers + (1 if worker_index < self.missing % workers else 0)

    @classmethod
    def of(cls, study, target: int, workers: int = 1) -> TrialBudget:
        """The budget of a stored study now."""
        import optuna

        done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        return cls(target, len(study.get_trials(deepcopy=False, states=done)), workers)
