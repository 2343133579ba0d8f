# Two commands for a newcomer: `make run` (set up + whole pipeline) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
# CPU build that lies on disk on our machines; GPU runners install a CUDA wheel first (docs/scale-out.md).
TORCH_SPEC ?= torch==2.13.0

export PATH := $(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1
export MLFLOW_DISABLE_TELEMETRY := true
export BENTOML_DO_NOT_TRACK := true
export HF_HUB_DISABLE_TELEMETRY := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup lock system-packages run quick test fuzz crash-test learning-curve ui plots bench-train compare tracking-server worker clean

setup: $(VENV)/.installed

# Hash-pinned versions of everything but torch (docs/development.md#the-install-lock): torch first, alone; then
# the lock, every file checked against its hash; then the project itself (editable) without resolving anything.
LOCK := requirements/lock.txt
PIP := $(BIN)/python -m pip --disable-pip-version-check
$(VENV)/.installed: pyproject.toml $(LOCK)
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --no-deps "$(TORCH_SPEC)"
	$(PIP) install --quiet --require-hashes --no-deps -r $(LOCK)
	$(PIP) install --quiet --no-deps -e '.[dev]'
	$(PIP) check
	@touch $@

# Regenerates $(LOCK) from pyproject.toml with the venv's uv (index access), keeping the locked versions unless
# UPGRADE=1, and rewrites bentofile.yaml's pins from it. Then `make setup` installs it.
lock:
	$(BIN)/python requirements/lock.py --torch "$(TORCH_SPEC)" $(if $(UPGRADE),--upgrade)

run: setup
	dvc repro
	@echo
	@python -m pipeline.results

# The quick preset for trying things: one study trial on train.max_train_pairs, no refit, up to the error analysis
# (no registry, no Bento), as a DVC experiment; ARGS="-S train.loss=cosent" sets more params. The workspace then
# holds the experiment's params and outputs (`dvc exp show` compares; `git checkout params.yaml && dvc checkout` returns).
quick: setup
	dvc exp run -S refit.enabled=false -S study.n_trials=1 $(ARGS) analyze
	@echo
	@python -m pipeline.results

# The suite in TEST_WORKERS pytest-xdist processes, each test file in one (a file's scenarios share one fixture and
# run in order): most of its time is single-threaded (imports, subprocesses, servers starting), so 2 fill 2 cores.
TEST_WORKERS ?= 2
test: setup system-packages
	ruff check .
	pytest --numprocesses $(TEST_WORKERS) --dist loadfile

# Release check: the schema fuzzer with more examples per API and phase than the suite's 25 (docs/reliability.md).
fuzz: setup
	KSTS_FUZZ_EXAMPLES=$(or $(EXAMPLES),300) pytest -q tests/test_service_hardening.py -k fuzzing

# Release check: every stage of the tiny pipeline SIGKILLed at a random moment, for 3 seeds (the suite runs seed 0).
crash-test: setup
	KSTS_CRASH_SEEDS="$(or $(SEEDS),0 1 2)" pytest -s -q tests/test_pipeline_dvc.py -k killed_at_a_random_moment

# The demo-page test drives headless Chromium (Debian packages); installed here when missing and root.
system-packages:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			apt-get install -y -q chromium chromium-driver || { apt-get update -q && apt-get install -y -q chromium chromium-driver; }; \
		else echo "install the Debian packages chromium and chromium-driver (the demo-page test needs them)" >&2; exit 1; fi; \
	fi

# The MLflow UI over the pipeline's store: the study is a parent run with its trials nested under it. It prints the
# link that opens the model-training view (MLflow 3.17 opens the GenAI view otherwise: docs/experiments.md#mlflow).
ui: setup
	python -m pipeline.mlflow_ui --port $(or $(PORT),5000)

# DVC plots as a page that draws offline (vega libraries inlined, no CDN): reports/plots/index.html. ARGS=... passes
# more `dvc plots show` arguments (targets, -x, -y, -o).
plots: setup
	python -m pipeline.offline_plots $(ARGS)

bench-train: setup
	python bench/train_throughput.py

clean:
	rm -rf data models reports

# Default hyperparameters at 250-all training pairs beside the study's spread (reports/learning_curve.md, .png).
learning-curve: setup
	python -m pipeline.learning_curve
	python -m pipeline.offline_plots reports/learning_curve.csv -x train_pairs -y val_pearson -o reports/learning_curve_plots

# One row per (model, head) from the registered runs in MLflow: run after `dvc exp run -S model.head=...`.
compare: setup
	python -m pipeline.compare
	python -m pipeline.offline_plots reports/compare.csv --template bar_horizontal -x f1 -y label -o reports/compare_plots

# --- Serving (BentoML; docs/serving.md) ---------------------------------------------------------------
BENTOML_HOME ?= $(CURDIR)/bentoml_home
.PHONY: package serve container bench-serve soak

# The registry's champion into the BentoML store under $(BENTOML_HOME), then `bentoml build` (DVC stage package).
package: setup
	dvc repro package

# The packaged champion on http://127.0.0.1:$(PORT) (default 3000): Swagger UI at /, the demo page at /demo/.
serve: setup
	BENTOML_HOME=$(BENTOML_HOME) bentoml serve service:KoreanSimilarity --host 127.0.0.1 --port $(or $(PORT),3000)

# The packaged Bento as a Docker image, run on 127.0.0.1, checked, removed (root: starts dockerd; docs/serving.md#container).
container: setup
	BENTOML_HOME=$(BENTOML_HOME) python -m pipeline.container

# Load test over loopback: the service with and without batching vs a plain FastAPI app (bench/results/serve_load.json).
bench-serve: setup
	python bench/serve_load.py $(BENCH_ARGS)

# 10 minutes at c=64 with 200 stalled clients on the packaged champion, RSS sampled (bench/results/soak.json).
soak: setup
	BENTOML_HOME=$(BENTOML_HOME) python bench/soak.py --home $(BENTOML_HOME) $(BENCH_ARGS)

# Scale-out (docs/scale-out.md). A shared tracking server: MLFLOW_BACKEND is any SQLAlchemy
# URL (postgresql://user:pass@db/mlflow on a cluster), ARTIFACTS a shared path or s3://bucket/prefix.
MLFLOW_BACKEND ?= sqlite:///$(CURDIR)/mlflow.db
ARTIFACTS ?= $(CURDIR)/mlartifacts
tracking-server: setup
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false mlflow server --backend-store-uri "$(MLFLOW_BACKEND)" \
		--artifacts-destination "$(ARTIFACTS)" --host $(or $(HOST),127.0.0.1) --port $(or $(PORT),5000)

# One more trial worker for the running study (on this or another host): set OPTUNA_STORAGE and
# MLFLOW_TRACKING_URI to the shared stores; WORKER numbers it (seeds its sampler), default 1.
worker: setup
	python -m pipeline.stages.train --worker $(or $(WORKER),1)
