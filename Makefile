# The README's two commands: `make demo` (the main job on the embedded offline default) and
# `make test` (lint + the whole test suite). Both create .venv on first use and install the
# package with its `dev` extra (pytest, ruff, the studio's test client and Playwright). The
# studio's browser test also needs a Chromium: `.ci/run` installs Debian's when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.faceregen-installed
DEMO := checkpoints/demo

.PHONY: demo test install clean-demo bench

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/faceregen train hydra.run.dir=$(DEMO)/train trainer.resume=auto
	$(BIN)/faceregen eval ckpt=$(DEMO)/train/checkpoints/last.pt hydra.run.dir=$(DEMO)/eval
	$(BIN)/faceregen regen --ckpt $(DEMO)/train/checkpoints/last.pt --out $(DEMO)/regen.png \
		--compare $$($(BIN)/python scripts/demo_regen_args.py data/synthetic/prepared-64)
	@echo "results: $(DEMO)/train (samples/, tb/, checkpoints/), $(DEMO)/eval/table.md, $(DEMO)/regen_compare.png (mask | reference | result)"
	@echo "paint masks in the browser: $(BIN)/faceregen studio --ckpt $(DEMO)/train/checkpoints/last.pt"

test: $(STAMP)
	$(BIN)/ruff check src tests scripts
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python scripts/bench.py

clean-demo:
	rm -rf $(DEMO)
