# moodbgm — every target sets itself up first (idempotent, quick when done).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SAMPLE := samples/demo.mp4
SAMPLE2 := samples/storm.mp4
DEMO_OUT ?= out/demo

.PHONY: setup system demo test test-fast lint fmt typecheck bench bench-serve bench-music bench-gpu lora-smoke train-emotion up down clean sample

setup: system $(STAMP)

system:
	@bash services/scripts/setup-system.sh

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[all,dev]'
	@touch $(STAMP)

sample: setup
	@test -f $(SAMPLE) || $(PY) -m devtools.sample $(SAMPLE)

demo: sample
	$(VENV)/bin/moodbgm run $(SAMPLE) -o $(DEMO_OUT)

test: setup
	@bash services/scripts/ensure-redis.sh
	$(VENV)/bin/pytest -q

test-fast: setup
	@bash services/scripts/ensure-redis.sh
	$(VENV)/bin/pytest -q -m "not slow"

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

fmt: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

typecheck: setup
	$(VENV)/bin/mypy

bench: sample
	$(PY) -m devtools.bench --sample $(SAMPLE) -o bench-results/bench.json

bench-serve: sample
	$(PY) -m devtools.bench --only serve --sample $(SAMPLE) -o bench-results/bench-serve.json

# the music evaluator (issue 12): the demo and a second arc, every style; JSON + one figure per job
bench-music: sample
	@test -f $(SAMPLE2) || $(PY) -m devtools.sample $(SAMPLE2) --arc storm
	$(PY) -m devtools.music_eval --bench --samples $(SAMPLE) $(SAMPLE2) --out-root out/music \
		-o bench-results/music.json --figures bench-results; rc=$$?; \
		cp bench-results/music-demo-cinematic.png bench-results/music-demo.png; exit $$rc

bench-gpu: setup
	$(PY) services/devtools/bench_riffusion_gpu.py --out bench-results/gpu.json

lora-smoke: setup
	$(PY) -m lora.smoke

# Retrain the emotion classifier from the corpora (about 3 h on 2 cores; README, Emotion classifier).
# The context encoder's two fits run side by side, one thread each, as the shipped encoder was fitted.
ENCODER := $(PY) services/devtools/train_context_encoder.py
train-emotion: setup
	$(PY) services/devtools/train_emotion.py
	OMP_NUM_THREADS=1 $(ENCODER) --hold-out & held=$$!; \
		OMP_NUM_THREADS=1 $(ENCODER) --fit-only; rc=$$?; wait $$held && exit $$rc
	$(ENCODER) --blend-only
	$(PY) services/devtools/train_emotion.py --evaluate

up: setup
	@bash services/scripts/up.sh

down:
	@bash services/scripts/down.sh

clean:
	rm -rf out bench-results .pytest_cache .mypy_cache .ruff_cache
