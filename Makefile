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

# Every test runs once per backend, each in its own process. The three
# processes run side by side (TEST_PARALLEL=0: one after another); each
# writes out/test/<backend>.log, printed whole when all have ended. pytest's
# exit code 5 ("no tests collected") is not a failure. Side by side on 2
# cores the suite takes ~27 min (the slowest backend), one after another ~45.
TEST_PARALLEL ?= 1
TESTS ?= tests
test: $(VENV)/.installed
	@mkdir -p out/test; \
	for b in $(BACKENDS); do \
	  if [ "$(TEST_PARALLEL)" = 0 ]; then \
	    echo "=== KERAS_BACKEND=$$b ==="; \
	    KERAS_BACKEND=$$b $(PY) -m pytest -q -p no:cacheprovider $(TESTS); \
	    rc=$$?; if [ $$rc -ne 0 ] && [ $$rc -ne 5 ]; then exit $$rc; fi; \
	  else \
	    echo "started KERAS_BACKEND=$$b (out/test/$$b.log)"; \
	    ( KERAS_BACKEND=$$b $(PY) -m pytest -q -p no:cacheprovider $(TESTS) \
	        > out/test/$$b.log 2>&1; echo $$? > out/test/$$b.rc ) & \
	  fi; \
	done; \
	wait; \
	[ "$(TEST_PARALLEL)" = 0 ] && exit 0; \
	status=0; \
	for b in $(BACKENDS); do \
	  echo "=== KERAS_BACKEND=$$b ==="; cat out/test/$$b.log; \
	  rc=$$(cat out/test/$$b.rc 2>/dev/null || echo 1); \
	  echo "=== KERAS_BACKEND=$$b: pytest exit code $$rc ==="; \
	  if [ $$rc -ne 0 ] && [ $$rc -ne 5 ]; then status=$$rc; fi; \
	done; \
	exit $$status

# ruff (in the dev extras, configured in pyproject.toml): lint, then check
# that `ruff format` would change nothing.
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

.PHONY: install demo test lint
