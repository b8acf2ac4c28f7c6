# uniseg — two commands on a fresh machine: `make repro` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The seeds of the committed headline (reports/seeds/default/): `make seeds` recomputes only what is missing or stale
# (about 37 minutes per seed on 2 cores); WORLD1_SEEDS="0 1 2" adds the second world.
SEEDS  ?= 0 1 2 3 4
ORACLE_SEEDS ?= 0 1 2 3
# The oracle arms run over ORACLE_SEEDS: `oracle`, and `oracle-out` (its out-of-space relations only) on request.
ORACLE_ARMS ?= oracle
WORLD1_SEEDS ?=
# The arms of world 1 (empty: the default arms, as on world 0).
WORLD1_ARMS ?=
# The converged verdict's seeds (`make converged`): every arm on world 0 and, on world 1, CE (cosine),
# Null BCE, C-R BCE and control.
CONVERGED_SEEDS ?= 0 1 2
# ... then these seeds for the arms of every world-0 pair whose 95 % interval straddles its target.
EXTEND_SEEDS ?= 3 4
# Its arms run two at a time (each stage process on half the cores): on 2 cores two single-threaded
# training processes make 1.3-1.6x the steps of one on both (`make bench`: train.cpu_jobs_throughput).
CONVERGED_JOBS ?= 2
# Arms run at once (each stage process gets cores / JOBS threads).
JOBS   ?= 1
# `make ladder LADDER_FLAGS=--unseen`: once B* is fixed, also score every rung's kept models on the unseen sets.
LADDER_FLAGS ?=
# The profile `make seeds` runs: params.yaml (default) or params.<PROFILE>.yaml; results in reports/seeds/<PROFILE>/.
PROFILE ?= default
PARAMS := $(if $(filter default,$(PROFILE)),params.yaml,params.$(PROFILE).yaml)
# Stage commands (`python -m stages.<name>`) and dvc must find the venv's python first.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
# Each stage command imports the package afresh: Python keeps its compiled bytecode (about a second
# less per process; __pycache__ is ignored by git, by dvc and by the results' fingerprints), also where the
# environment says not to.
export PYTHONDONTWRITEBYTECODE :=

.PHONY: help install repro test quick lint format bench seeds ladder converged paper lock clean

help:
	@echo "make repro   install (once) and run the whole DVC pipeline on the embedded synthetic benchmark"
	@echo "make test    install (once) and run lint + the test suite"
	@echo "make quick   lint + the tests not marked slow (the edit loop)"
	@echo "make bench   run the benchmarks, write reports/bench.json"
	@echo "make seeds   CE (linear and cosine head) / Null BCE / C-R BCE / control over SEEDS='$(SEEDS)' (world 0) and"
	@echo "             WORLD1_SEEDS='$(WORLD1_SEEDS)' (world 1), ORACLE_ARMS='$(ORACLE_ARMS)' over ORACLE_SEEDS='$(ORACLE_SEEDS)' (world 0);"
	@echo "             an empty list skips its runs; JOBS=$(JOBS) arms at once; resumable and crash-safe: runs only"
	@echo "             what is missing or stale, then writes reports/headline.{json,md}; PROFILE=name runs"
	@echo "             params.<name>.yaml instead (results and headline in reports/seeds/<name>/)"
	@echo "make ladder  the converged verdict's budget: CE (linear, cosine) and Null BCE at 1600-12800 iterations,"
	@echo "             seen val splits only, until the pre-registered rule fixes B* (reports/seeds/ladder/ladder.json);"
	@echo "             hours of a 2-core CPU, resumable: rerun it to go on; once B* is fixed, LADDER_FLAGS=--unseen"
	@echo "             scores every rung's kept models on the unseen sets too (how the verdict moves with the budget)"
	@echo "make converged  once the ladder fixed B*: params.converged.yaml and the verdict's arms at B* over"
	@echo "             CONVERGED_SEEDS='$(CONVERGED_SEEDS)' (world 0: every arm with oracle and oracle-out; world 1: four"
	@echo "             arms), the rung's kept models adopted, then EXTEND_SEEDS='$(EXTEND_SEEDS)' for the arms of every pair"
	@echo "             whose 95 % interval straddles its target; results and headline in reports/seeds/converged/,"
	@echo "             set beside the short budget's in reports/results.md (\"At convergence\"); arms run"
	@echo "             CONVERGED_JOBS=$(CONVERGED_JOBS) at a time"
	@echo "make paper   queue the paper's experiment grid (real data) and render reports/paper_tables.md"

install: $(STAMP)

# The lock pins every package (torch 2.14.1 + torchvision 0.29.1 included); the package itself is editable.
$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

repro: $(STAMP)
	$(BIN)/dvc repro
	@echo
	@echo "Done. Read reports/results.md (tables) and reports/figures/ (pictures);"
	@echo "metrics: $(BIN)/dvc metrics show   plots: $(BIN)/dvc plots show"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint
	$(BIN)/python -m pytest

quick: lint
	$(BIN)/python -m pytest -m "not slow"

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run --out reports/bench.json

seeds: $(STAMP)
	$(if $(strip $(SEEDS)),$(BIN)/python -m uniseg.experiments seeds --params $(PARAMS) --world 0 --jobs $(JOBS) $(foreach s,$(SEEDS),--seed $(s)))
	$(if $(strip $(ORACLE_SEEDS)),$(BIN)/python -m uniseg.experiments seeds --params $(PARAMS) --world 0 --jobs $(JOBS) $(foreach a,$(ORACLE_ARMS),--arm $(a)) $(foreach s,$(ORACLE_SEEDS),--seed $(s)))
	$(if $(strip $(WORLD1_SEEDS)),$(BIN)/python -m uniseg.experiments seeds --params $(PARAMS) --world 1 --jobs $(JOBS) $(foreach a,$(WORLD1_ARMS),--arm $(a)) $(foreach s,$(WORLD1_SEEDS),--seed $(s)))
	$(BIN)/python -m uniseg.experiments headline --params $(PARAMS)
	$(if $(filter default,$(PROFILE)),$(BIN)/dvc repro report   # results.md embeds the default profile's headline)

ladder: $(STAMP)
	$(BIN)/python -m uniseg.experiments ladder --params params.ladder.yaml --jobs $(JOBS) $(LADDER_FLAGS)

converged: $(STAMP)
	$(BIN)/python -m uniseg.experiments converged --params params.ladder.yaml
	$(MAKE) seeds PROFILE=converged SEEDS="$(CONVERGED_SEEDS)" ORACLE_SEEDS="$(CONVERGED_SEEDS)" \
		ORACLE_ARMS="oracle oracle-out" WORLD1_SEEDS="$(CONVERGED_SEEDS)" \
		WORLD1_ARMS="ce-cosine nullbce crbce control" JOBS=$(CONVERGED_JOBS)
	$(BIN)/python -m uniseg.experiments extend --params params.converged.yaml --world 0 --jobs $(CONVERGED_JOBS) \
		$(foreach s,$(EXTEND_SEEDS),--seed $(s))
	$(BIN)/dvc repro --force --single-item report   # results.md: the converged headline beside the short one

paper: $(STAMP)
	$(BIN)/python -m uniseg.experiments queue
	$(BIN)/dvc queue start --jobs 1
	$(BIN)/python -m uniseg.experiments table --out reports/paper_tables.md

lock: $(STAMP)
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^uniseg' > requirements.lock.new
	( echo '# Exact versions used by CI and `make`: pip install -r requirements.lock (generated with pip freeze; regenerate with `make lock`).'; cat requirements.lock.new ) > requirements.lock
	rm requirements.lock.new

clean:
	rm -rf $(VENV)
