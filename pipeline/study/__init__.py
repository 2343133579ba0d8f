"""The Optuna study the train stage runs: every trial one fine-tuning run and one nested MLflow run.

space.py      search space, the first (hand-set) trial, the winner rule, the study's config hash
budget.py     the trial budget: target, finished, each local worker's quota
storage.py    the persistent Optuna storage and the MLflow parent run (resume, dead workers, orphaned runs)
objective.py  the objective: one trial = one `finetune` in one nested MLflow run
trials.py     running trials in this process, with the study's callbacks
workers.py    extra local worker processes
identity.py   what names a study (params, data, base model, code): a finished study is reused only when it matches
refit.py      the refit: the winner's hyperparameters trained once more on the refit budget, its own nested run
shipped.py    the model that ships (the refit's, else the best trial's), decided once
runner.py     the whole study as the train stage runs it
reports.py    reports/study.json, reports/train_metrics.json, the parent run's summary and plots
"""
