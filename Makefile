# realtime-glue: every routine action has a target here (see README).
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv
PY := $(VENV)/bin/python
TIMED := tests/scripts/timed
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible/ansible.cfg
# When set, tests and roles build the real nginx-push-stream-module from this
# local copy; otherwise they run against Debian's libnginx-mod-nchan and say so.
export PUSH_STREAM_SRC

.PHONY: help deps test unit unit-debian integration lint lint-python lint-ansible \
        lint-nginx lint-units deb repo package-test molecule base-image \
        push-stream-module bench up down clean

help:
	@echo "make up            local cluster with the live page (see README)"
	@echo "make down          remove the local cluster"
	@echo "make test          everything: unit, integration, lint, package, molecule"
	@echo "make bench         benchmarks (ratios against raw baselines, saved to bench/results/)"
	@echo "make deb | repo    build the .deb | a local apt repository from it"
	@echo "make lint          ruff, ansible-lint, lintian, nginx -t, systemd-analyze verify"

## --- set-up -----------------------------------------------------------------
deps: build/.deps-apt build/.deps-venv

build/.deps-apt: tests/setup/apt-packages.txt tests/setup/install-apt.sh
	tests/setup/install-apt.sh tests/setup/apt-packages.txt
	@mkdir -p build && touch $@

build/.deps-venv: tests/requirements-tools.txt glue/pyproject.toml tests/setup/make-venv.sh
	tests/setup/make-venv.sh
	@mkdir -p build && touch $@

## --- tests ------------------------------------------------------------------
# `make test` runs every part even when one fails, prints how long each took,
# and fails at the end if any part failed.
test:
	@tests/scripts/test-all.sh

unit: deps
	$(PY) -m pytest tests/unit

# The same unit tests on Debian's python3-* packages (what the .deb runs on).
unit-debian: deps
	cd tests && PYTHONPATH=$(CURDIR)/glue /usr/bin/python3 -m pytest -p no:cacheprovider unit

integration: deps push-stream-module
	$(PY) -m pytest tests/integration

lint: lint-python lint-ansible lint-nginx lint-units

lint-python: deps
	ruff check glue tests bench
	ruff format --check glue tests bench


## --- push-stream-module -----------------------------------------------------
# nginx-push-stream-module from $PUSH_STREAM_SRC, built against Debian's nginx
# source; says so and does nothing when PUSH_STREAM_SRC is unset (nchan flavour).
push-stream-module:
	tests/scripts/build-push-stream-module.sh

## --- deb, repo, lint-units, package-test -------------------------------------
# The realtime-glue .deb from glue/ + packaging/debian/ (staged in build/deb/),
# lintian-clean; the result lands in packaging/out/.
deb: deps
	packaging/build-deb.sh

# A signed flat apt repository of packaging/out/*.deb in packaging/out/repo.
repo: deb
	packaging/make-repo.sh

# systemd-analyze verify (and the offline security score) of the package's units.
lint-units: deps
	tests/scripts/lint-units.sh

# Install, run, restart and purge the package in a systemd container.
package-test: repo
	tests/package/test-package.sh

## --- bench ------------------------------------------------------------------
# Benchmarks, not tests: one glue process's throughput as ratios to wrk and to a
# seed-style loop, enqueue -> EventSource latency, RSS with 10,000 jobs in
# flight; printed and saved to bench/results/ (see bench/glue_bench.py).
# Then one push node's capacity: 100,000 EventSource subscribers (BENCH_SUBSCRIBERS)
# held and broadcast to, push-stream and nchan side by side, with the host's and
# the role's sysctl values (see bench/node_capacity.py). Then what HTTPS costs
# the node beside plain HTTP: memory per subscriber over TLS HTTP/1.1 and HTTP/2
# for three ssl_buffer_size values, connection setup and handshake CPU, and what
# 1,000,000 TLS subscribers need (see bench/tls_capacity.py).
bench: deps push-stream-module
	$(PY) bench/glue_bench.py
	$(PY) bench/node_capacity.py
	$(PY) bench/tls_capacity.py

## --- lint-nginx -------------------------------------------------------------
# nginx -t on nginx/push-stream.conf rendered for both flavours (push_stream
# only when `make push-stream-module` has built the module).
lint-nginx: deps
	$(PY) tests/scripts/lint-nginx.py

## --- base-image ---------------------------------------------------------------
# realtime-glue/systemd:bookworm, the systemd container image molecule and the
# package test boot (debootstrap + docker import; cached: skipped when the
# image exists, root fs tarball kept in build/base-image/). Starts the docker
# engine if none answers (`tests/scripts/docker-engine.sh stop` stops it).
base-image:
	tests/scripts/docker-engine.sh start
	tests/image/build-base.sh

## --- molecule -----------------------------------------------------------------
# `molecule test` for every ansible/roles/*/molecule/* scenario, timed, with the
# shared base config .config/molecule/config.yml. ROLES="redis" limits the run.
molecule: deps base-image
	ROLES="$(ROLES)" tests/scripts/molecule-all.sh

## --- lint-ansible -------------------------------------------------------------
# ansible-lint, production profile (.ansible-lint), over ansible/; then a
# syntax check of the playbooks against the example inventory.
lint-ansible: deps
	ansible-lint ansible/
	cd ansible/playbooks && ansible-playbook --syntax-check -i inventory/example.yml site.yml rolling-restart.yml

## --- cluster: cluster-image, up, down, cluster-test ----------------------------
# The test cluster of the Vagrantfile (queue = Redis + glue, push1, push2) on
# Vagrant's docker provider, provisioned by ansible/playbooks/site.yml.
.PHONY: cluster-image cluster-test

# realtime-glue/vagrant-node:bookworm: the systemd base image + sshd + the vagrant user.
cluster-image: base-image
	tests/image/build-vagrant-node.sh

# The cluster, a demo producer and the live page's address (see tests/scripts/cluster-up.sh).
up: deps repo cluster-image
	$(TIMED) up tests/scripts/cluster-up.sh

# Everything `make up` created (REMOVE_IMAGES=1: the node image too).
down:
	tests/scripts/cluster-down.sh

# End-to-end, failover, rolling restart and security tests across the cluster
# (tests/cluster/). Uses a running cluster as it is; otherwise brings one up
# and destroys it afterwards.
cluster-test: deps repo cluster-image
	tests/scripts/cluster-test.sh
