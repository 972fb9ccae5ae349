# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv test demo bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

demo: $(STAMP)
	rm -rf out/demo
	$(VENV)/bin/polarnet run xor5d --quick --out out/demo
	$(VENV)/bin/polarnet report out/demo

bench: $(STAMP)
	$(PY) benchmarks/bench_freeze.py
	$(PY) benchmarks/bench_xor5d.py
	$(PY) benchmarks/bench_images.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .hypothesis
