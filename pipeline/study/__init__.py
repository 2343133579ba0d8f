"""The Optuna study the train stage runs: every trial one fine-tuning run and one nested MLflow run.

space.py      search space, the first (hand-set) trial, the winner rule, the study's config hash
budget.py     the trial budget: target, finished, each local worker's quota
storage.py    the persistent Optuna storage and the MLflow parent run (resume, dead workers, orphaned runs)
objective.py  the objective: one trial = one `finetune` in one nested MLflow run
trials.py     running trials in this process, with the study's callbacks
workers.py    extra local worker processes
runner.py     the whole study as the train stage runs it
reports.py    reports/study.json, reports/train_metrics.json, the parent run's summary and plots
"""
