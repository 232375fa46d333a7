# keras-prune: two commands, `make demo` and `make test` (`make lint` checks
# style; CI runs it before the tests). Each creates .venv
# when missing (Python >= 3.10, CPU wheels: torch==2.13.0, tensorflow-cpu).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BACKENDS ?= jax tensorflow torch

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m pip install -q --no-deps "keras-hub==0.32.0"
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	KERAS_BACKEND=$${KERAS_BACKEND:-jax} $(PY) -m keras_prune.demo --out out/demo

# Every test runs once per backend, each in its own process. pytest's exit
# code 5 ("no tests collected") is not a failure.
test: $(VENV)/.installed
	@for b in $(BACKENDS); do \
	  echo "=== KERAS_BACKEND=$$b ==="; \
	  KERAS_BACKEND=$$b $(PY) -m pytest -q -p no:cacheprovider tests; \
	  rc=$$?; if [ $$rc -ne 0 ] && [ $$rc -ne 5 ]; then exit $$rc; fi; \
	done

# ruff (in the dev extras, configured in pyproject.toml): lint, then check
# that `ruff format` would change nothing.
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

.PHONY: install demo test lint
