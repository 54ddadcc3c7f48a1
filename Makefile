# BreastLab: `make serve` starts the MONAI Label server on the shipped samples; `make test` runs the tests.
# Both create the virtual environment in .venv first (a few minutes on the first run).
.PHONY: serve test test-fast env

serve: env
	.venv/bin/breastlab serve

test: env
	.venv/bin/python -m pytest

test-fast: env
	.venv/bin/python -m pytest -m "not slow"

env:
	scripts/setup_env.sh
