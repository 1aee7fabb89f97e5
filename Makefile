# Two entry points for a fresh clone (python3, pip and a C compiler are all it needs):
#   make demo   — create .venv, install, run the main job
#   make test   — create .venv, install with the test extras, run the whole suite:
#                 the tests, then the C kernels again under AddressSanitizer + UBSan
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SOURCES := setup.py pyproject.toml $(wildcard kernels/c/*.c kernels/c/*.h)

.PHONY: demo test sanitize clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(SOURCES) | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(SOURCES) | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test,oracle]"
	touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/python -m minillm demo

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q tests
	$(MAKE) --no-print-directory sanitize

# The `c` backend's suite against an ASan + UBSan build of the kernels (built on first use).
sanitize: $(VENV)/.installed-test
	MINILLM_C_SANITIZE=1 LD_PRELOAD=$$(gcc -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0 \
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/test_backends.py tests/test_c_backend.py -k "c] or c_backend"

clean:
	rm -rf $(VENV) build *.egg-info minillm/_ckernels*.so
