# Two entry points for a fresh clone (python3, pip and a C compiler are all it needs):
#   make demo   — create .venv, install, run the main job
#   make test   — create .venv, install with the test extras, run the whole suite:
#                 the tests (MPI ones included), the C kernels again under ASan + UBSan,
#                 every lesson in --quick mode, and the benchmarks in --quick mode
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SOURCES := setup.py pyproject.toml minillm/backends/c/build.py $(shell find kernels/c -name '*.[ch]')

.PHONY: demo test sanitize lessons bench-quick book clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(SOURCES) | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(SOURCES) | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test,oracle,export,mpi,book]"
	touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/python -m minillm demo

# What `make test` insists on: a backend that fails to build, or a test extra that did not
# install, stops the run with its reason instead of its tests silently dropping out.
# (cupy needs a GPU: add it with `make test REQUIRE_BACKENDS=numpy,numba,c,cuda-sim,cupy`.)
REQUIRE_BACKENDS ?= numpy,numba,c,cuda-sim
REQUIRE_MODULES ?= torch,transformers,tokenizers,mpi4py,onnx,onnxruntime,jupytext,nbclient,nbconvert,mathjax

test: $(VENV)/.installed-test
	PATH="$(CURDIR)/$(BIN):$$PATH" MINILLM_REQUIRE_BACKENDS=$(REQUIRE_BACKENDS) \
	MINILLM_REQUIRE_MODULES=$(REQUIRE_MODULES) $(BIN)/python -m pytest -q tests
	$(MAKE) --no-print-directory sanitize
	$(MAKE) --no-print-directory lessons QUICK=--quick
	$(MAKE) --no-print-directory bench-quick

# The `c` backend's suite against an ASan + UBSan build of the kernels (built on first use).
sanitize: $(VENV)/.installed-test
	MINILLM_C_SANITIZE=1 LD_PRELOAD=$$(gcc -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0 \
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/test_backends.py tests/test_c_backend.py tests/test_kernel_ladders.py \
	tests/test_bf16_training.py tests/test_llama_kernels.py -k "c] or c_backend or kernel_ladders"

# Every lesson (lessons/NN_*.py, in order); each exits non-zero if a claim it makes does not hold on this run.
LESSON_NUMBERS := $(shell ls lessons | sed -n 's/^0*\([0-9][0-9]*\)_.*\.py$$/\1/p')
lessons: $(VENV)/.installed-test
	@for n in $(LESSON_NUMBERS); do \
		echo "=== lesson $$n $(QUICK)"; \
		PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m minillm lesson $$n $(QUICK) || exit 1; \
	done

# The benchmarks at small sizes, into a scratch folder, so they never rot (no timing asserts).
bench-quick: $(VENV)/.installed-test
	$(BIN)/python -m benchmarks --quick --out $$(mktemp -d)
	$(BIN)/python -m benchmarks.gpt2_scale --quick

# The lessons as a book: each executed as a notebook, rendered to site/*.html (site/index.html),
# with the lessons' small budgets unless BOOK_MODE is emptied (make book BOOK_MODE=).
BOOK_MODE ?= --quick
book: $(VENV)/.installed-test
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m minillm book --out=site $(BOOK_MODE)

clean:
	rm -rf $(VENV) build *.egg-info minillm/_ckernels*.so
