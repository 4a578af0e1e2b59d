# etcd-asg-coordinator — every command a user or CI needs. See README.md.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
APT_PACKAGES := shellcheck bind9-dnsutils iproute2 util-linux zip curl openssl
STAMP := $(VENV)/.installed

RUNTIME_STAMP := $(VENV)/.runtime

.PHONY: setup test test-fast lint build demo soak bench bench-snapshot package deploy clean help docs

# Debian tools (shellcheck, dig, ip, unshare, zip, curl, openssl) when missing and we may install them,
# then the virtualenv with the pinned dev dependencies.
setup: $(STAMP)

# The virtualenv alone, with a current pip: all that `make build` needs (build_zip.py uses the standard library
# and pip only).
$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	@missing=""; for c in shellcheck dig ip unshare zip curl openssl; do command -v $$c >/dev/null || missing="$$missing $$c"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then echo "installing Debian packages for:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES) >/dev/null; \
	  else echo "note: missing$$missing (install: sudo apt-get install $(APT_PACKAGES)); tests needing them are skipped"; fi; \
	fi
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

# The coordinator's runtime dependencies only (no test tools): what `make deploy` runs locally (pki init).
$(RUNTIME_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q -e .
	touch $(RUNTIME_STAMP)

# Every target with what it does.
help:
	@echo "make demo      a real etcd cluster scaled, healed and rolled by the coordinator on emulated AWS (about 2.5 min)"
	@echo "make test      the whole test suite (610 CPU-s: under 8 min on 2 busy cores)"
	@echo "make test-fast the simulated-time tests only, no real etcd, no subprocess: the edit loop (46 CPU-s: 30 s)"
	@echo "make setup     .venv with the pinned development dependencies (the other targets run it when needed)"
	@echo "make lint      ruff, cfn-lint, checkov, shellcheck, the embedded start script"
	@echo "make soak      20,000 randomized schedules (SOAK_SCHEDULES=, SOAK_SEED=); resumes where it stopped"
	@echo "make bench     benchmarks on emulated AWS; writes bench-results/ and docs/benchmarks.md (SEED=)"
	@echo "make bench-snapshot  the snapshot benchmark alone (real etcd filled to SNAPSHOT_SIZES MiB)"
	@echo "make docs      rewrite the generated tables in docs/ (settings, template parameters)"
	@echo "make build     build/coordinator.zip, the Lambda code (needs only a virtualenv with pip)"
	@echo "make package   make build, then upload it: BUCKET=<S3 bucket> (writes build/packaged.yaml)"
	@echo "make deploy    make package, the TLS secrets, then the coordinator stack: see docs/deploy.md"
	@echo "make clean     remove build output, caches, demo logs and bench results"

# The whole suite. Four workers on two cores: the real-etcd tests (wall clock, mostly waiting) run in three groups,
# each on a worker of its own, and the simulated-time tests fill the cores; work is handed out in the order
# tests/conftest.py sorts it (groups first, then the longest tests).
# Bytecode is written even where the environment says PYTHONDONTWRITEBYTECODE: each worker and each sandbox would
# otherwise compile every module it imports, and pytest would rewrite every test module's asserts, on every run.
PYTEST := PYTHONDONTWRITEBYTECODE= $(PY) -m pytest
test: setup
	$(PYTEST) -n 4 --dist loadgroup --no-loadscope-reorder

# The edit loop: simulated time only — no real etcd, no sandbox, no subprocess (e2e) — and without the
# simulated-time tests that take a CPU-second or more each (tests/slow.txt). make test runs them all.
test-fast: setup
	$(PYTEST) -n 2 -m "not e2e and not slow"

# The newcomer's command: a real etcd cluster scaled 0 -> 3 -> 5 -> 3, healed and rolled by the coordinator on
# emulated AWS, inside a private sandbox (loopback only; the host's resolv.conf is never touched). About 2.5 min.
demo: setup
	$(PY) -m infra.local.demo

# The long randomized run of tests/reliability: 20,000 schedules over two processes; prints the counts and
# writes them to tests/reliability/soak-results.json (quoted in docs/guarantees.md).
# Checkpointed every 500 schedules (tests/reliability/soak-progress.json): run it again to resume.
SOAK_SCHEDULES ?= 20000
SOAK_SEED ?= 20
soak: setup
	SOAK_SCHEDULES=$(SOAK_SCHEDULES) SOAK_SEED=$(SOAK_SEED) SOAK_COMMIT="$$(git describe --always --dirty 2>/dev/null)" $(PY) -m pytest tests/reliability/test_schedules.py \
	  -m soak -k test_soak -s --timeout=0

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check hook_handler infra tests docs
	$(VENV)/bin/cfn-lint infra/aws/coordinator.yaml infra/aws/etcd-cluster.yaml
	$(VENV)/bin/checkov --quiet --compact --skip-download --framework cloudformation -d infra/aws
	shellcheck infra/aws/bootstrap/*.sh
	$(PY) infra/aws/bootstrap/embed.py --check

# Benchmarks (tests/bench/): this coordinator beside the usual per-event strategies on emulated AWS
# (simulated time), plus cold start and snapshots to S3 (real etcd). Prints the tables; writes
# bench-results/bench.md and bench.json, and copies the report into docs/benchmarks.md.
SEED ?= 1
bench: setup
	PYTHONHASHSEED=0 $(PY) tests/bench/run.py --seed $(SEED) --out bench-results $(BENCH_ARGS)
	$(PY) docs/generate.py --bench bench-results/bench.md

# The generated tables of docs/ (settings from hook_handler/settings.py, parameters from infra/aws/*.yaml).
docs: setup
	$(PY) docs/generate.py

# The snapshot part of make bench alone (tests/bench/bench_snapshot.py): real etcd 3.5.1 filled to each size,
# snapshots to the emulated S3 beside etcdctl, peak memory, restore beside etcdutl. A few minutes.
SNAPSHOT_SIZES ?= 128,256
bench-snapshot: setup
	$(PY) tests/bench/bench_snapshot.py --sizes $(SNAPSHOT_SIZES) --json bench-results/snapshot.json

# -- AWS: build the Lambda zip, package it to S3, deploy the coordinator stack ----------------
# make build                        -> build/coordinator.zip (reproducible: same inputs, same bytes)
# make package BUCKET=b             -> build/packaged.yaml (zip uploaded to s3://b)
# make deploy BUCKET=b STACK=s ZONE_ID=Z... DOMAIN=example.com GROUP=etcd [HOOK_GROUP=] [NOTIFY=SNS] [TLS=0] [PARAMS='K=V ...']
#   TLS=1 (default): `python -m hook_handler pki init` makes (or keeps) the cluster's CA and the coordinator's client
#   certificate in Secrets Manager (etcd-asg/<STACK>/ca, etcd-asg/<STACK>/coordinator) and the stack runs mutual TLS
#   (_etcd-server-ssl._tcp, https, a certificate per member); TLS=0: plaintext.
#   (etcd membership, the default, needs PARAMS='VpcId=vpc-... SubnetIds=subnet-a,subnet-b'; or EtcdMembership=false)
AWS ?= aws
BUILD := build
ZIP := $(BUILD)/coordinator.zip
NOTIFY ?= EventBridge
HOOK_GROUP ?= $(GROUP)
TLS ?= 1

build: | $(PY)
	$(PY) infra/aws/build_zip.py --output $(ZIP)

package: build
	@test -n "$(BUCKET)" || { echo "usage: make package BUCKET=<S3 bucket for the function code>" >&2; exit 2; }
	$(AWS) cloudformation package --template-file infra/aws/coordinator.yaml --s3-bucket $(BUCKET) \
	  --output-template-file $(BUILD)/packaged.yaml

deploy: package $(RUNTIME_STAMP)
	@test -n "$(STACK)" -a -n "$(ZONE_ID)" -a -n "$(DOMAIN)" -a -n "$(GROUP)" || { \
	  echo "usage: make deploy BUCKET=<bucket> STACK=<stack> ZONE_ID=<hosted zone id> DOMAIN=<domain> GROUP=<group[,group]>" >&2; \
	  echo "       [HOOK_GROUP=<group to put the hooks on; empty if it has them>] [NOTIFY=EventBridge|EventBridgeSQS|SNS] [TLS=1|0] [PARAMS='Key=Value ...']" >&2; \
	  echo "       etcd membership (the default) runs in the VPC: PARAMS='VpcId=vpc-... SubnetIds=subnet-a,subnet-b' (or EtcdMembership=false)" >&2; exit 2; }
	@tls=""; if [ "$(TLS)" = 1 ]; then \
	  arns=$$($(PY) -m hook_handler pki init --ca-secret etcd-asg/$(STACK)/ca \
	    --client-secret etcd-asg/$(STACK)/coordinator --name $(STACK)) || exit 1; \
	  tls=$$(echo "$$arns" | $(PY) -c 'import json, sys; a = json.load(sys.stdin); \
	    print("SrvRecordName=_etcd-server-ssl._tcp EtcdPeerScheme=https EtcdTlsSecretArn=%s EtcdCaSecretArn=%s" \
	    % (a["etcd_tls_secret"], a["etcd_ca_secret"]))') || exit 1; fi; \
	$(AWS) cloudformation deploy --template-file $(BUILD)/packaged.yaml --stack-name $(STACK) --s3-bucket $(BUCKET) \
	  --capabilities CAPABILITY_IAM --no-fail-on-empty-changeset \
	  --parameter-overrides HostedZoneId=$(ZONE_ID) DomainName=$(DOMAIN) AsgNames=$(GROUP) \
	    GroupName=$(HOOK_GROUP) NotificationPath=$(NOTIFY) $$tls $(PARAMS)
	@# A launch hook whose DefaultResult is CONTINUE would let an unanswered launch go InService unadmitted: warn.
	@$(PY) -m hook_handler check-hooks --stack $(STACK) || \
	  echo "note: the groups' lifecycle hooks were not checked (above); run: $(PY) -m hook_handler check-hooks --stack $(STACK)" >&2

clean:
	rm -rf build dist .pytest_cache .ruff_cache .demo bench-results
