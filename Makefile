# Two commands on a fresh machine (Python 3.11, Node 20, gcc):
#   make run   - set up and run the monitor on ./config.toml
#   make test  - set up (venv, npm ci, Debian packages) and run lint, types and the suite
SHELL := /bin/bash
VENV := .venv
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
APT := DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get

.PHONY: run test lint bench setup system-deps bench-deps deploy-files clean

setup: $(STAMP) node_modules/.installed system-deps

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Real components for the tests: Prometheus + promtool, Redis and Redis Sentinel, HAProxy,
# amtool and systemd-analyze (Debian packages; deploy/ is checked with the last two), and
# Chromium (the status page's browser test drives it through Playwright).
system-deps:
	@missing=""; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	command -v amtool >/dev/null || missing="$$missing prometheus-alertmanager"; \
	command -v systemd-analyze >/dev/null || missing="$$missing systemd"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v redis-sentinel >/dev/null || missing="$$missing redis-sentinel"; \
	PATH="$$PATH:/usr/sbin" command -v haproxy >/dev/null || missing="$$missing haproxy"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(APT) update -qq && $(APT) install -y -qq --no-install-recommends $$missing; \
	fi

# Peers the benchmarks compare against (same machine, same run).
bench-deps:
	@missing=""; \
	command -v prometheus-blackbox-exporter >/dev/null || missing="$$missing prometheus-blackbox-exporter"; \
	command -v prometheus >/dev/null || missing="$$missing prometheus"; \
	command -v prometheus-alertmanager >/dev/null || missing="$$missing prometheus-alertmanager"; \
	command -v nginx >/dev/null || missing="$$missing nginx-light"; \
	command -v wrk >/dev/null || missing="$$missing wrk"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	if [ -n "$$missing" ]; then \
	  $(APT) update -qq && $(APT) install -y -qq --no-install-recommends $$missing; \
	fi

run: $(STAMP)
	$(VENV)/bin/crypitor run -c config.toml

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

test: setup lint
	$(VENV)/bin/pytest -q -n 3 --dist loadgroup -m "not serial"
	$(VENV)/bin/pytest -q -m serial

bench: $(STAMP) bench-deps
	$(VENV)/bin/python -m bench.http_cpu
	$(VENV)/bin/python -m bench.capacity
	$(VENV)/bin/python -m bench.service
	$(VENV)/bin/python -m bench.isolation
	$(VENV)/bin/python -m bench.alerting
	$(VENV)/bin/python -m bench.follower
	$(VENV)/bin/python -m bench.drain_cost
	$(VENV)/bin/python -m bench.cluster

# Rewrites the deploy kit's generated files (tests/deploy checks they are up to date).
deploy-files: $(STAMP)
	$(VENV)/bin/python -m tests.deploy.generated

clean:
	rm -rf $(VENV) node_modules data .mypy_cache .ruff_cache .pytest_cache
