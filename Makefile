# etcd-asg-coordinator — every command a user or CI needs. See README.md.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
APT_PACKAGES := shellcheck bind9-dnsutils iproute2 util-linux zip
STAMP := $(VENV)/.installed

.PHONY: setup test test-fast lint build demo soak bench package deploy clean

# Debian tools (shellcheck, dig, ip, unshare, zip) when missing and we may install them,
# then the virtualenv with the pinned dev dependencies.
setup: $(STAMP)

$(STAMP): pyproject.toml
	@missing=""; for c in shellcheck dig ip unshare zip; do command -v $$c >/dev/null || missing="$$missing $$c"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then echo "installing Debian packages for:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES) >/dev/null; \
	  else echo "note: missing$$missing (install: sudo apt-get install $(APT_PACKAGES)); tests needing them are skipped"; fi; \
	fi
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

test: setup
	$(PY) -m pytest

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check hook_handler infra tests

clean:
	rm -rf build dist .pytest_cache .ruff_cache .demo bench-results
