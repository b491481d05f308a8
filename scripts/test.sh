#!/usr/bin/env bash
# Run everything CI runs: install what the tests need into .venv, then lint,
# type-check, build the docs, and run the whole test suite.
# Extra arguments go to pytest (e.g. scripts/test.sh -k smuggling).
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
bash scripts/install-peers.sh

echo "== ruff"
.venv/bin/ruff format --check smtpkit tests examples bench
.venv/bin/ruff check smtpkit tests examples bench
echo "== mypy --strict smtpkit"
.venv/bin/mypy --strict smtpkit
echo "== mkdocs build --strict"
site=$(mktemp -d)
NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --quiet --site-dir "$site"
rm -rf "$site"
echo "== pytest"
set +e
.venv/bin/pytest -p no:cacheprovider "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
    echo "pytest collected no tests: that is a failure here" >&2
    exit 1
fi
exit "$status"
