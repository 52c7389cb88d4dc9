# The two commands of the README. Both create .venv and install the pinned environment first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench install postgres-binaries browser clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/dispatch-connector demo

# The PostgreSQL tests start a throwaway server on loopback (tests/postgres_server.py) unless
# TEST_DATABASE_URL names one; this only makes sure the server binaries are there.
postgres-binaries:
	@if [ -z "$$TEST_DATABASE_URL" ] && ! command -v initdb >/dev/null; then \
		echo "installing PostgreSQL server binaries"; \
		apt-get update -qq && apt-get install -y -qq postgresql >/dev/null && \
		ln -sf /usr/lib/postgresql/*/bin/initdb /usr/lib/postgresql/*/bin/pg_ctl /usr/lib/postgresql/*/bin/postgres /usr/local/bin/; \
	fi

# The dashboard's browser test drives Debian's Chromium (Playwright with executablePath); no browser
# download. If it cannot be installed the test skips loudly (and fails under CI).
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
		echo "installing Debian's chromium for the dashboard browser test"; \
		(apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || \
		echo "WARNING: could not install chromium: the browser test will be skipped"; \
	fi

test: $(STAMP) postgres-binaries browser lint
	$(BIN)/pytest -q -p no:cacheprovider

lint: $(STAMP)
	$(BIN)/ruff format --check connector statemachines sync migrations tests bench
	$(BIN)/ruff check connector statemachines sync migrations tests bench
	$(BIN)/mypy

bench: $(STAMP)
	mkdir -p bench/results
	for b in bench/*.py; do $(BIN)/python $$b --quick --json bench/results/$$(basename $$b .py).json || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
