# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv test demo demo-clean bench gpu-check clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	sh .ci/install-browser
	sh .ci/install-dataset
	touch $(STAMP)

# the suite runs on every core (pytest-xdist; each test uses one torch thread), which halves it on
# CI's 2 cores; `make test TEST_WORKERS=0` runs it in one process
TEST_WORKERS ?= auto
test: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist worksteal

# demo: the XOR-5D study and its report, then the quick reproduction of the papers' claims (every
# study this machine can run in minutes, each with its report, and out/reproduce/scorecard.html)
demo: $(STAMP) demo-clean
	$(VENV)/bin/polarnet run xor5d --quick --out out/demo
	$(VENV)/bin/polarnet report out/demo
	$(VENV)/bin/polarnet reproduce --budget quick --out out/reproduce

# a demo starts afresh: the previous demo's folders go, and a line names each one that does
DEMO_OUT := out/demo out/reproduce
demo-clean:
	@for d in $(DEMO_OUT); do \
		if [ -e "$$d" ]; then echo "make demo: deleting $$d (the previous demo's results; to keep them, move the folder before running make demo)"; fi; \
	done
	@rm -rf $(DEMO_OUT)

# `make bench STRICT=1` fails when any benchmark misses a target; every benchmark still runs
# first. BENCH_ARGS go to each script (`make bench BENCH_ARGS=--quick` checks that they run).
STRICT ?=
BENCH_ARGS ?=
BENCH_FLAGS = $(if $(filter 1 yes true,$(STRICT)),--strict) $(BENCH_ARGS)
bench: $(STAMP)
	@status=0; \
	for b in bench_freeze bench_native bench_xor5d bench_images bench_split_transfer bench_learners bench_zoo; do \
		echo "$$ $(PY) benchmarks/$$b.py $(BENCH_FLAGS)"; \
		$(PY) benchmarks/$$b.py $(BENCH_FLAGS) || status=1; \
	done; \
	exit $$status

# `make gpu-check OUT=DIR`: every CUDA test and benchmark in one command, under 8 minutes on one
# H100, with its logs and DIR/summary.md (benchmarks/gpu_check.py). No venv recipe: a GPU machine
# without the network runs it on its own torch (python3), with src/ on the path.
OUT ?= out/gpu-check
gpu-check:
	$(if $(wildcard $(PY)),$(PY),$(PYTHON)) benchmarks/gpu_check.py --out $(OUT)

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .hypothesis
