# posd: `make demo` runs the scripted demo shift, `make test` the whole suite.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.posd-installed
# Two workers (pytest-xdist): the suite's waits on subprocesses and brokers overlap, and the
# 5-minute budget on 2 cores holds. `make test PYTEST_ARGS=` runs it serially.
PYTEST_ARGS ?= -n 2

.PHONY: all venv systools test demo bench lint fuzz replay-regen install clean

all: test

$(STAMP): pyproject.toml
	@test -x $(PY) || scripts/make-venv.sh $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	@touch $@

venv: $(STAMP)

systools:
	@scripts/ensure-system-tools.sh

test: venv systools
	$(PY) -m pytest $(PYTEST_ARGS)

demo: venv
	@scripts/ensure-system-tools.sh demo
	$(VENV)/bin/posd demo

bench: venv
	$(PY) -m bench

lint: venv
	$(VENV)/bin/ruff check posd drivers protocols tests bench fuzz
	$(VENV)/bin/ruff format --check posd drivers protocols tests bench fuzz
	$(VENV)/bin/mypy --strict protocols drivers posd
	$(VENV)/bin/lint-imports --no-cache

fuzz: venv
	$(PY) -m pip install -q --disable-pip-version-check -e '.[fuzz]'
	$(PY) -m fuzz $(FUZZ_ARGS)

replay-regen: venv
	$(PY) scripts/regen-replay $(REPLAY_ARGS)

# Installs posd on this box (as root), or into DESTDIR as the root a box will boot:
# systemd/install.sh --root DESTDIR. WHEELHOUSE= installs offline from a directory of wheels,
# SOURCE= a posd wheel instead of this tree. Upgrade: the same again. Removal: uninstall.sh.
install:
	systemd/install.sh $(if $(DESTDIR),--root $(DESTDIR)) $(if $(WHEELHOUSE),--wheelhouse $(WHEELHOUSE)) $(SOURCE)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
