"""The refit: after the study, the winning trial's hyperparameters trained once more on the `refit` budget (all
training pairs and NLI triplets by default). Trials stay cheap and comparable; the refit is what ships.

The refit is one MLflow run nested under the study's parent run, tagged `korean_sts.role: refit` and with the
trial it refits. Its model is kept beside the trials in studies/<study>/refit-<digest>, the digest covering the
refit params and the winner (number and params): a rerun with the same study, winner and budget reuses it, as a
finished study is reused; anything else trains a new one and drops the old.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline import distributed
from pipeline.digests import json_digest
from pipeline.heads import save_pair_model
from pipeline.study.objective import StudyContext, log_result, log_setup, train_trial
from pipeline.study.space import TrialSetup, suggest_trial_setup
from pipeline.study.storage import STUDY_ROLE_TAG
from pipeline.tables import write_json

if TYPE_CHECKING:
    from pipeline.config import RefitParams

REFIT_ROLE = "refit"
REFIT_OF_TAG = "refit.of_trial"
REFIT_DIR_PREFIX = "refit-"
REFIT_RECORD = "refit.json"  # written last: a folder without it is an unfinished refit


@dataclass(frozen=True)
class RefitResult:
    """A finished refit: where its model is, its MLflow run, what it trained on and how it validated."""

    folder: str
    run_id: str
    trial: int  # the study trial whose hyperparameters it used
    params: dict[str, Any]
    train_pairs: int
    nli_triplets: int
    validation: dict[str, float]
    train_seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


def refit_setup(best, context: StudyContext, refit: RefitParams) -> TrialSetup:
    """The winner's setup (its sampled values, read back from the finished trial) on the refit's data budget."""
    setup = suggest_trial_setup(best, context.params.search, context.base_train, context.model.name)
    budget = {"max_train_pairs": refit.max_train_pairs, "nli_triplets": refit.nli_triplets}
    return TrialSetup(train=setup.train.model_copy(update=budget), model_name=setup.model_name)


def refit_folder(trials_dir: Path, best, refit: RefitParams) -> Path:
    """studies/<study>/refit-<digest of the refit params and the winner>."""
    what = {"trial": best.number, "params": best.params, "refit": refit.model_dump()}
    return trials_dir / f"{REFIT_DIR_PREFIX}{json_digest(what)}"


def finished_refit(folder: Path) -> RefitResult | None:
    """The refit recorded in folder, or None when there is none (or it did not finish)."""
    record = folder / REFIT_RECORD
    if not record.is_file():
        return None
    return RefitResult(**json.loads(record.read_text(encoding="utf-8")))


def drop_other_refits(trials_dir: Path, keep: Path) -> None:
    """Refits of an earlier winner or budget: their models are no longer the study's output."""
    for folder in trials_dir.glob(f"{REFIT_DIR_PREFIX}*"):
        if folder != keep:
            shutil.rmtree(folder, ignore_errors=True)


def train_refit(context: StudyContext, best, refit: RefitParams) -> RefitResult:
    """The refit of `best` in its own MLflow run nested under the study's; reused when already finished."""
    import mlflow

    folder = refit_folder(context.trials_dir, best, refit)
    done = finished_refit(folder)
    if done is not None:
        print(f"train: reusing the refit of trial {best.number} in {folder} (same study, winner and refit params)")
        return done
    setup = refit_setup(best, context, refit)
    tags = {**context.run_tags, STUDY_ROLE_TAG: REFIT_ROLE, REFIT_OF_TAG: str(best.number)}
    print(f"train: refit of trial {best.number} {best.params} on max_train_pairs={refit.max_train_pairs}, "
          f"nli_triplets={refit.nli_triplets}")  # fmt: skip
    with mlflow.start_run(
        run_name=f"refit-of-trial-{best.number}", nested=True, parent_run_id=context.parent_run_id, tags=tags
    ) as run:
        log_setup(best.params, setup, context)
        distributed.shared_refit(setup)
        model, result, tokenizer = train_trial(None, setup, context)
        validation = log_result(result)
        save_pair_model(model, tokenizer, context.settings_for_model(setup.model_name), folder)
    done = RefitResult(
        folder=str(folder),
        run_id=run.info.run_id,
        trial=best.number,
        params=dict(best.params),
        train_pairs=result.train_pairs,
        nli_triplets=result.nli_triplets,
        validation=validation,
        train_seconds=round(result.train_seconds, 1),
        history=result.history,
    )
    write_json(folder / REFIT_RECORD, asdict(done))
    drop_other_refits(context.trials_dir, folder)
    print(f"train: refit validation {validation}")
    return done
