# Two commands: `make demo` (set up, then run the main job on real Fashion-MNIST) and `make test`.
# Setup is idempotent: the venv is rebuilt only when pyproject.toml changes.
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.edgebnn-installed
EDGEBNN := $(VENV)/bin/edgebnn

.PHONY: demo test setup native native-asan system-data system-test lint clean-venv

demo: setup native system-data
	$(EDGEBNN) pipeline

test: setup native system-data system-test
	$(VENV)/bin/python -m pytest -q

setup: $(STAMP) native

# The native runtime (runtime/native): libedgebnn.so (the Python binding loads it), libedgebnn.a,
# its C tests and kernel benchmark, in runtime/native/build/<arch>/. Needs gcc and make.
native:
	@bash scripts/ensure-system.sh compiler
	@nice -n 10 $(MAKE) -s -C runtime/native all

# The same with -fsanitize=address,undefined (tests/native builds it by itself too).
native-asan:
	@bash scripts/ensure-system.sh compiler
	@nice -n 10 $(MAKE) -s -C runtime/native SAN=1 lib tests

$(STAMP): pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV) || { \
		echo "edgebnn: cannot create $(VENV) with $(PYTHON): install Python 3.11 with venv (Debian: apt-get install python3.11-venv) or run make PYTHON=/path/to/python3.11" >&2; \
		rm -rf $(VENV); exit 2; }
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

# Debian packages: the dataset for the demo; qemu/debootstrap/sshd for the emulated-Pi tests.
system-data:
	@bash scripts/ensure-system.sh data

system-test:
	@bash scripts/ensure-system.sh test

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean-venv:
	rm -rf $(VENV)
