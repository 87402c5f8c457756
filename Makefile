# realtime-glue: every routine action has a target here (see README).
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv
PY := $(VENV)/bin/python
TIMED := tests/scripts/timed
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible/playbooks/ansible.cfg

.PHONY: help deps test unit unit-debian integration integration-main integration-long-outage lint lint-python lint-ansible \
        lint-nginx lint-units deb module-deb repo package-test molecule base-image \
        nginx-modules bench up down

help:
	@echo "make up            local cluster with the live page (see README)"
	@echo "make down          remove the local cluster"
	@echo "make test          everything: unit, integration, lint, package, molecule"
	@echo "make bench         benchmarks (ratios against raw baselines, saved to bench/results/)"
	@echo "make deb | module-deb | repo   build realtime-glue | our nginx module packages | a signed apt repository per Debian release"
	@echo "make lint          ruff, ansible-lint, lintian, nginx -t, systemd-analyze verify"

## --- set-up -----------------------------------------------------------------
deps: build/.deps-apt $(VENV)/.installed

build/.deps-apt: tests/setup/apt-packages.txt tests/setup/install-apt.sh
	tests/setup/install-apt.sh tests/setup/apt-packages.txt
	@mkdir -p build && touch $@

# The stamp lives in the venv: a venv removed by hand is made again.
$(VENV)/.installed: tests/requirements-tools.txt glue/pyproject.toml tests/setup/make-venv.sh
	tests/setup/make-venv.sh
	@touch $@

## --- tests ------------------------------------------------------------------
# `make test` runs every part even when one fails, prints how long each took,
# and fails at the end if any part failed.
test:
	@tests/scripts/test-all.sh

unit: deps
	$(PY) -m pytest -rfEs tests/unit

# The same unit tests on Debian's python3-* packages (what the .deb runs on).
unit-debian: deps
	cd tests && PYTHONPATH=$(CURDIR)/glue /usr/bin/python3 -m pytest -rfEs -p no:cacheprovider unit

# Every integration test: integration-main (the twelve slowest are named at the end:
# what `make test`'s time goes to), then integration-long-outage, the one real outage of
# three minutes (marker long_outage), which `make test` runs beside molecule instead,
# since it mostly waits.
integration: integration-main integration-long-outage

integration-main: deps nginx-modules
	$(PY) -m pytest -rfEs --durations=12 -m "not long_outage" tests/integration

integration-long-outage: deps nginx-modules
	$(PY) -m pytest -rfEs -m long_outage tests/integration

lint: lint-python lint-ansible lint-nginx lint-units

lint-python: deps
	ruff check glue tests bench
	ruff format --check glue tests bench


## --- nginx-modules ----------------------------------------------------------
# libnginx-mod-http-push-stream installed on this host with apt, as on a push
# node: on Debian 12 the package `make module-deb` builds, on Debian 13
# Debian's own; and libnginx-mod-http-subscribe-signature built here for this
# host's release. Fails, saying why, when a module cannot be had.
nginx-modules: deps
	tests/scripts/install-nginx-modules.sh
	tests/scripts/install-nginx-modules.sh libnginx-mod-http-subscribe-signature

## --- deb, repo, lint-units, package-test -------------------------------------
# The realtime-glue .deb from glue/ + packaging/debian/ (staged in build/deb/),
# lintian-clean; the result lands in packaging/out/.
deb: deps
	packaging/build-deb.sh

# Our nginx module packages, lintian-clean, in packaging/out/<codename>/:
# libnginx-mod-http-push-stream for Debian 12 (nginx 1.22.1) from Debian's orig
# tarball, checked against packaging/libnginx-mod-http-push-stream/orig.sha256
# before it is unpacked; libnginx-mod-http-subscribe-signature
# (nginx/subscribe-signature/) for Debian 12 and, in a Debian 13 container
# (docker: take /tmp/rg-docker.lock), for Debian 13.
module-deb: deps
	packaging/build-module-debs.sh

# A signed flat apt repository per Debian release in packaging/out/repo/<codename>/.
repo: deb module-deb
	packaging/make-repo.sh

# systemd-analyze verify (and the offline security score) of the package's units.
lint-units: deps
	tests/scripts/lint-units.sh

# Install, run, restart, upgrade and purge realtime-glue, then the push-stream
# module package, in a systemd container of Debian 12 and one of Debian 13.
package-test: repo
	tests/package/test-releases.sh

## --- bench ------------------------------------------------------------------
# Benchmarks, not tests: one glue process saturated as ratios to wrk and to a
# seed-style loop; at 2,000 msg/s its CPU per job as a ratio to saturated and its
# enqueue -> EventSource latency as a ratio to the node alone; RSS with 10,000
# jobs in flight; printed and saved to bench/results/ (see bench/glue_bench.py).
# BENCH_BEFORE=<git ref> also measures that commit's glue in the same run.
# Then 1, 2 and 3 glue instances over a partitioned feed beside one instance
# alone on a plain feed, as ratios (see bench/partition_bench.py).
# Then encrypted Web Push messages per second from one glue process beside the
# plain http stage, as ratios (see bench/webpush_bench.py; BENCH_GLUE_PYTHON=
# /usr/bin/python3 runs the glue on Debian's python3-* packages).
# Then enqueue -> EventSource latency while Redis fails over (Sentinel; the
# primary killed -9 under durable puts): p99 in the failover window against
# steady, seconds until flowing again, lost and duplicates (bench/failover_bench.py).
# Then the push node: its settings compared (bench/node_settings.py), and its
# CPU per delivery against bench/fanout_baseline.c with node and clients in
# their own network namespaces, 250,000 subscribers (BENCH_SUBSCRIBERS), what
# 1,000,000 need, bandwidth at 128 B / 1 KB / 4 KB (bench/node_capacity.py);
# the chart bench/results/node-capacity.png (Debian's python3 + matplotlib).
# Then what HTTPS costs the node beside plain HTTP: memory per subscriber over
# TLS HTTP/1.1 and HTTP/2 per ssl_buffer_size, connection setup and handshake
# CPU, and what 1,000,000 TLS subscribers need (see bench/tls_capacity.py).
# Signed subscribe URLs: a node's subscribe rate and CPU per subscribe with the
# check (our subscribe-signature module) on vs off in the same run (bench/subscribe_auth_bench.py).
# The node benches take /tmp/rg-bench.lock: two at once would measure each other.
bench: deps nginx-modules
	BENCH_BEFORE=$(BENCH_BEFORE) flock /tmp/rg-bench.lock $(PY) bench/glue_bench.py
	flock /tmp/rg-bench.lock $(PY) bench/partition_bench.py
	$(PY) bench/webpush_bench.py
	$(PY) bench/failover_bench.py
	flock /tmp/rg-bench.lock $(PY) bench/node_settings.py
	flock /tmp/rg-bench.lock $(PY) bench/node_capacity.py
	flock /tmp/rg-bench.lock $(PY) bench/tls_capacity.py
	flock /tmp/rg-bench.lock $(PY) bench/subscribe_auth_bench.py
	/usr/bin/python3 bench/node_charts.py

## --- lint-nginx -------------------------------------------------------------
# nginx -t on nginx/push-stream.conf rendered for both flavours.
lint-nginx: deps nginx-modules
	$(PY) tests/scripts/lint-nginx.py

## --- base-image ---------------------------------------------------------------
# realtime-glue/systemd:bookworm-<recipe> and :trixie-<recipe>, the systemd
# container images molecule, the package test and the cluster boot (debootstrap
# + docker import; cached: skipped when the image exists, root fs tarball kept
# in build/base-image/). Starts the docker engine if none answers
# (`tests/scripts/docker-engine.sh stop` stops it).
base-image:
	tests/scripts/docker-engine.sh start
	tests/image/build-base.sh bookworm
	tests/image/build-base.sh trixie

## --- molecule -----------------------------------------------------------------
# `molecule test` for every ansible/roles/*/molecule/* scenario, timed, with the
# shared base config .config/molecule/config.yml: each on Debian 12 and 13 at
# once. The roles install from the repository `make repo` builds.
# ROLES="redis" limits the run.
molecule: deps base-image repo
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
