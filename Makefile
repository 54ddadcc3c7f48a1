# BreastLab: `make serve` starts the MONAI Label server on the shipped samples; `make test` runs ruff and the tests.
# Both create the virtual environment in .venv first (a few minutes on the first run).
# The Slicer extension's MRML tests run in their own .venv-slicer (slicer-core pins its own vtk).
.PHONY: serve test test-fast test-slicer env slicer-env

serve: env
	.venv/bin/breastlab serve

test: env slicer-env
	.venv/bin/ruff check .
	.venv/bin/python -m pytest -n 2 --dist loadfile
	.venv-slicer/bin/python -m pytest slicer_extension/tests_mrml

test-fast: env slicer-env
	.venv/bin/ruff check .
	.venv/bin/python -m pytest -m "not slow"
	.venv-slicer/bin/python -m pytest -m "not slow" slicer_extension/tests_mrml

test-slicer: env slicer-env
	.venv/bin/python -m pytest slicer_extension/tests
	.venv-slicer/bin/python -m pytest slicer_extension/tests_mrml

env:
	scripts/setup_env.sh

slicer-env:
	scripts/setup_slicer_env.sh
