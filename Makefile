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
	$(VENV)/bin/cfn-lint infra/aws/coordinator.yaml infra/aws/etcd-cluster.yaml
	$(VENV)/bin/checkov --quiet --compact --skip-download --framework cloudformation -d infra/aws
	shellcheck infra/aws/bootstrap/*.sh
	$(PY) infra/aws/bootstrap/embed.py --check

# -- AWS: build the Lambda zip, package it to S3, deploy the coordinator stack ----------------
# make build                        -> build/coordinator.zip (reproducible: same inputs, same bytes)
# make package BUCKET=b             -> build/packaged.yaml (zip uploaded to s3://b)
# make deploy BUCKET=b STACK=s ZONE_ID=Z... DOMAIN=example.com GROUP=etcd [HOOK_GROUP=] [NOTIFY=SNS] [PARAMS='K=V ...']
AWS ?= aws
BUILD := build
ZIP := $(BUILD)/coordinator.zip
NOTIFY ?= EventBridge
HOOK_GROUP ?= $(GROUP)

build: setup
	$(PY) infra/aws/build_zip.py --output $(ZIP)

package: build
	@test -n "$(BUCKET)" || { echo "usage: make package BUCKET=<S3 bucket for the function code>" >&2; exit 2; }
	$(AWS) cloudformation package --template-file infra/aws/coordinator.yaml --s3-bucket $(BUCKET) \
	  --output-template-file $(BUILD)/packaged.yaml

deploy: package
	@test -n "$(STACK)" -a -n "$(ZONE_ID)" -a -n "$(DOMAIN)" -a -n "$(GROUP)" || { \
	  echo "usage: make deploy BUCKET=<bucket> STACK=<stack> ZONE_ID=<hosted zone id> DOMAIN=<domain> GROUP=<group[,group]>" >&2; \
	  echo "       [HOOK_GROUP=<group to put the hooks on; empty if it has them>] [NOTIFY=EventBridge|EventBridgeSQS|SNS] [PARAMS='Key=Value ...']" >&2; exit 2; }
	$(AWS) cloudformation deploy --template-file $(BUILD)/packaged.yaml --stack-name $(STACK) \
	  --capabilities CAPABILITY_IAM --no-fail-on-empty-changeset \
	  --parameter-overrides HostedZoneId=$(ZONE_ID) DomainName=$(DOMAIN) AsgNames=$(GROUP) \
	    GroupName=$(HOOK_GROUP) NotificationPath=$(NOTIFY) $(PARAMS)

clean:
	rm -rf build dist .pytest_cache .ruff_cache .demo bench-results
