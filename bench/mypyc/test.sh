#!/bin/sh
# Run the project's tests against the mypyc build (bench/mypyc/build.py).
#
#   bench/mypyc/test.sh [DIR] [pytest arguments]
#
# DIR defaults to bench/results/mypyc-build. Without arguments under tests/ it runs the protocol's
# tests (the list below); other pytest options are passed on.
set -eu
cd "$(dirname "$0")/../.."
dir=bench/results/mypyc-build
if [ $# -gt 0 ] && [ -d "$1/smtpkit" ]; then
    dir=$1
    shift
fi
dir=$(cd "$dir" && pwd)
repo=$PWD
# "python -m pytest" puts the current directory first on sys.path, and the checkout's
# smtpkit would win: run a copy of the tests from the build directory, where smtpkit is
# the compiled one (bench/mypyc/compiled_check.py makes sure of it).
rm -rf "$dir/tests"
cp -r tests "$dir/tests"
cp pyproject.toml "$dir/pyproject.toml"
find "$dir/tests" -name __pycache__ -prune -exec rm -rf {} +
cd "$dir"
paths=no
for arg in "$@"; do
    case "$arg" in tests*) paths=yes ;; esac
done
[ "$paths" = yes ] || set -- "$@" tests/test_compat.py tests/test_smtp_api.py tests/test_smtp_commands.py \
    tests/test_smtp_hooks.py tests/test_smtp_pipelining.py tests/test_smtp_session.py \
    tests/dialog tests/test_replies.py tests/test_data.py tests/test_transfer.py \
    tests/test_grammar.py
PYTHONPATH="$dir:$repo/bench/mypyc" exec "$repo/.venv/bin/python" -m pytest -p compiled_check -q "$@"
