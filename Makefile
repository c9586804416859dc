# smartnation: the two set-up commands are `make up` and `make test` (see README.md).
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
ENV ?= staging
# The toolchain, the local clusters and the local state backend live outside the repository.
# An assignment first, so that a refusal of the env module (exit 2: no passphrase for this backend)
# stops the recipe; `eval "$$(...)"` alone would evaluate nothing and carry on.
TOOLENV = toolenv="$$($(PY) -m smartnation.tooling.toolchain.env)" && eval "$$toolenv"

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $@

.PHONY: venv
venv: $(VENV)/.installed ## the project's virtualenv (PyPI only)

.PHONY: bootstrap
bootstrap: venv ## build or reuse every pinned tool (Go module proxy only)
	$(PY) -m smartnation.tooling.toolchain.bootstrap --python $(abspath $(PY))

.PHONY: env
env: ## print the exports for your shell: eval "$$(make -s env)"
	@$(PY) -m smartnation.tooling.toolchain.env

.PHONY: clusters
clusters: bootstrap ## start the local dusseldorf-test and monaco-onprem clusters (control planes, simulated and real nodes)
	bash .ci/node-deps.sh
	$(PY) -m smartnation.tooling.local_clusters.lifecycle up

.PHONY: clusters-down
clusters-down: venv ## stop the local clusters (their data is kept)
	$(PY) -m smartnation.tooling.local_clusters.lifecycle down

.PHONY: clusters-status
clusters-status: venv ## show whether each local cluster runs
	$(PY) -m smartnation.tooling.local_clusters.lifecycle status

.PHONY: clusters-reset
clusters-reset: venv ## delete the local clusters and all their data
	$(PY) -m smartnation.tooling.local_clusters.lifecycle reset

.PHONY: cache-trim
cache-trim: venv ## drop the Go build cache and extracted module sources once everything is built (keeps the module downloads a rebuild reads)
	$(PY) -m smartnation.tooling.toolchain.cache_trim

.PHONY: up
up: clusters images cache-trim ## bootstrap, start the clusters, deploy ENV (default staging) and verify it (smartnation verify)
	$(TOOLENV) && $(PY) -m smartnation.cli.main up $(ENV) --yes --init-secrets
	@# verify needs real Pods: locally only the environments a profile runs on its real nodes have them.
	@if $(PY) -m smartnation.tooling.local_clusters.runs_for_real $(ENV); then \
		$(TOOLENV) && $(PY) -m smartnation.cli.main verify $(ENV); \
	else echo "verify $(ENV): not run, $(ENV) runs on the simulated nodes of its local cluster (no real Pods)"; fi

.PHONY: contract-deps
contract-deps: ## install the Debian daemons the contract tests run against (and TimescaleDB for the host's PostgreSQL)
	bash .ci/contract-deps.sh
	bash .ci/timescaledb-host.sh

.PHONY: images
images: venv ## build the platform's images (cached) and push them by digest to each site's local registry
	bash .ci/image-deps.sh
	$(PY) -m smartnation.tooling.images build

.PHONY: images-lock
images-lock: venv ## rewrite environments/images.lock.yaml (the digests deployed) from the last `make images`
	$(PY) -m smartnation.tooling.images lock

.PHONY: images-debian-update
images-debian-update: venv ## take Debian's newest packages on purpose: rewrite infra/smartnation/tooling/images/debian-packages.lock.yaml
	$(PY) -m smartnation.tooling.images debian-update

.PHONY: test-unit
test-unit: venv ## the unit tests alone: about two minutes, no toolchain, no cluster
	$(PY) -m pytest -m unit -q

.PHONY: mutation
mutation: venv ## mutation testing (mutmut, unit tests) of settings, policy, promotion, components: hours; SCOPE=settings, MINUTES=N per scope; not in `make test`
	$(PY) -m tests.tools.mutation $(if $(SCOPE),--scope $(SCOPE)) $(if $(MINUTES),--minutes $(MINUTES))

.PHONY: lint
lint: venv ## ruff
	$(VENV)/bin/ruff check infra tests policy services
	$(VENV)/bin/ruff format --check infra tests policy services

.PHONY: test
test: clusters images contract-deps cache-trim ## the whole suite: unit, contract and integration
	# --durations: the slowest tests in every CI log, to keep the run inside its 90 minutes.
	$(TOOLENV) && $(PY) -m pytest -m "unit or contract or integration" --durations=40

.PHONY: bench
bench: clusters ## measure and rewrite BENCHMARKS.md
	$(TOOLENV) && $(PY) -m tests.benchmarks.run
