# The two entry points of the README's quick start. Both install what they need first.
PY ?= python3
PIP_INSTALL = $(PY) -m pip install --disable-pip-version-check -q

.PHONY: install install-dev reproduce test lint

install:
	$(PIP_INSTALL) torch==2.13.0 -e .

install-dev:
	$(PIP_INSTALL) torch==2.13.0 -e '.[dev]'
	bash scripts/install_browser.sh

reproduce: install
	seer reproduce

test: install-dev
	$(PY) -m pytest -q

lint:
	ruff check seer tests bench
