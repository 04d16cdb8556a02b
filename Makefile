# The two front-door commands: `make demo` and `make test`. Each installs what is missing.
.PHONY: setup demo test bench

setup:
	bash scripts/setup.sh

demo: setup
	.venv/bin/memlog demo

test:
	bash scripts/setup.sh --with-browser
	.venv/bin/python -m pytest -q

bench: setup
	.venv/bin/python bench/run_all.py
