#!/usr/bin/env bash
# Run everything CI runs. On the main interpreter (PYTHON, default python3), in .venv:
# ruff, mypy --strict, the docs build and the whole test suite. On every other supported
# Python this machine has (python3.X on PATH or under ~/.pyenv/versions), in .venv-3.X:
# the tests except the interop and slow ones, alongside the main run and each other.
# Then it prints which versions ran and how they did, and fails if any run failed.
# Virtualenvs are reused; they are reinstalled only when pyproject.toml changes.
# Extra arguments go to every pytest run (e.g. scripts/test.sh -k smuggling).
set -euo pipefail
cd "$(dirname "$0")/.."

SUPPORTED=(3.10 3.11 3.12 3.13)
# What the other versions skip: external peers and the long-running tests.
QUICK="not interop and not slow"
python=${PYTHON:-python3}
# The install depends on the declared dependencies and on where the checkout is.
install_key=$( (cat pyproject.toml; pwd) | sha256sum | cut -d' ' -f1)

version_of() {
    "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null
}

# A working interpreter of version $1: python$1 on PATH, else the newest pyenv build.
find_python() {
    local candidate
    local -a candidates=()
    candidate=$(command -v "python$1" 2>/dev/null) && candidates+=("$candidate")
    while IFS= read -r candidate; do
        candidates+=("$candidate")
    done < <(ls -d "${PYENV_ROOT:-$HOME/.pyenv}/versions/$1".*/bin/"python$1" 2>/dev/null \
        | sort -rV)
    for candidate in "${candidates[@]}"; do
        if [ "$(version_of "$candidate")" = "$1" ]; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

# Create the virtualenv $1 with interpreter $2. Debian leaves ensurepip out of its
# python3 (it is in python3-venv): as root with apt-get, install it and try again.
create_venv() {
    local dir=$1 interpreter=$2 version
    rm -rf "$dir"
    if "$interpreter" -m venv "$dir"; then
        return 0
    fi
    rm -rf "$dir"
    version=$(version_of "$interpreter")
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
        && ! "$interpreter" -c 'import ensurepip' 2>/dev/null; then
        echo "test.sh: $interpreter has no venv module; installing python$version-venv" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "python$version-venv" >/dev/null
        "$interpreter" -m venv "$dir" && return 0
    fi
    echo "test.sh: cannot create a virtualenv with $interpreter" \
        "(Debian/Ubuntu: apt-get install python3-venv)" >&2
    return 1
}

# Make $1 a virtualenv of $2 with this project and its test extra installed.
prepare_venv() {
    local dir=$1 interpreter=$2 stamp=$1/.smtpkit-test-install
    if ! "$dir/bin/python" -m pip --version >/dev/null 2>&1; then
        create_venv "$dir" "$interpreter"
    fi
    # Reused if installed for this pyproject.toml and still importing this checkout
    # (a plain "pip install ." into .venv replaces the editable install).
    if [ "$(cat "$stamp" 2>/dev/null)" = "$install_key" ] && "$dir/bin/python" -I -c \
        'import os, sys, smtpkit; sys.exit(not os.path.samefile(smtpkit.__file__, sys.argv[1]))' \
        "$PWD/smtpkit/__init__.py" 2>/dev/null; then
        return 0
    fi
    echo "== installing the test dependencies into $dir"
    "$dir/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
    "$dir/bin/python" -m pip install -q --disable-pip-version-check -e '.[test]'
    echo "$install_key" >"$stamp"
}

# pytest's status, except that collecting no tests (5) counts as a failure.
run_pytest() {
    local status=0
    "$@" </dev/null || status=$?
    if [ "$status" -eq 5 ]; then
        echo "pytest collected no tests: that is a failure here" >&2
        status=1
    fi
    return "$status"
}

# Run the quick tests on Python $1 in .venv-$1, into its own log and status file.
# Each version keeps its own mypy cache: the typing tests run mypy.
run_other_version() {
    local version=$1
    shift
    if MYPY_CACHE_DIR=".venv-$version/.mypy_cache" run_pytest ".venv-$version/bin/pytest" \
        -p no:cacheprovider -q -m "$QUICK" "$@" >".venv-$version/pytest.log" 2>&1; then
        echo 0 >".venv-$version/pytest.status"
    else
        echo "$?" >".venv-$version/pytest.status"
    fi
}

main_version=$(version_of "$python") || {
    echo "test.sh: cannot run $python" >&2
    exit 1
}
others=()
declare -A interpreters=()
for version in "${SUPPORTED[@]}"; do
    [ "$version" = "$main_version" ] && continue
    if interpreter=$(find_python "$version"); then
        others+=("$version")
        interpreters[$version]=$interpreter
    fi
done
# The virtualenvs of the other versions are prepared at the same time as the main
# one and the peers (mostly waiting on downloads and disk), each with its own log.
prepare_pids=()
for version in "${others[@]}"; do
    mkdir -p ".venv-$version"
    rm -f ".venv-$version/pytest.status"
    prepare_venv ".venv-$version" "${interpreters[$version]}" \
        >".venv-$version.prepare.log" 2>&1 &
    prepare_pids+=($!)
done
prepare_venv .venv "$python"
bash scripts/install-peers.sh
for index in "${!prepare_pids[@]}"; do
    version=${others[$index]}
    if ! wait "${prepare_pids[$index]}"; then
        cat ".venv-$version.prepare.log" >&2
        echo "test.sh: could not prepare .venv-$version" >&2
        exit 1
    fi
    cat ".venv-$version.prepare.log"
    rm -f ".venv-$version.prepare.log"
done

# The other versions run at the same time as the main run: the tests mostly wait
# on sockets and timers, so the runs share the cores well.
others_pids=()
if [ ${#others[@]} -gt 0 ]; then
    echo "== pytest -m '$QUICK' on Python ${others[*]}, in the background"
    for version in "${others[@]}"; do
        run_other_version "$version" "$@" &
        others_pids+=($!)
    done
    trap 'kill "${others_pids[@]}" 2>/dev/null || true' EXIT
fi

lint=0
echo "== ruff"
.venv/bin/ruff format --check smtpkit tests examples bench || lint=1
.venv/bin/ruff check smtpkit tests examples bench || lint=1
# Against the oldest supported Python's stubs and the main Python's, which differ.
for stubs in 3.10 "$main_version"; do
    echo "== mypy --strict --python-version $stubs smtpkit"
    .venv/bin/mypy --strict --python-version "$stubs" smtpkit || lint=1
done
echo "== mkdocs build --strict"
site=$(mktemp -d)
NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --quiet --site-dir "$site" || lint=1
rm -rf "$site"
echo "== pytest (Python $main_version)"
main_pytest=0
run_pytest .venv/bin/pytest -p no:cacheprovider "$@" || main_pytest=$?

if [ ${#others_pids[@]} -gt 0 ]; then
    wait "${others_pids[@]}" || true
    trap - EXIT
fi

# The log of each other version that failed, then one line per version.
status=0
[ "$lint" = 0 ] && [ "$main_pytest" = 0 ] || status=1
for version in "${others[@]}"; do
    if [ "$(cat ".venv-$version/pytest.status" 2>/dev/null || echo 1)" != 0 ]; then
        status=1
        echo "---- Python $version: .venv-$version/pytest.log"
        cat ".venv-$version/pytest.log" 2>/dev/null || true
    fi
done
echo
echo "== Python versions"
result() { if [ "$1" = 0 ]; then echo passed; else echo "FAILED (exit $1)"; fi; }
patch_version() { "$1" -c 'import platform; print(platform.python_version())'; }
echo "  $(patch_version .venv/bin/python) (.venv, $python): ruff, mypy, mkdocs:" \
    "$(result "$lint"), pytest${*:+ $*}: $(result "$main_pytest")"
for version in "${SUPPORTED[@]}"; do
    [ "$version" = "$main_version" ] && continue
    if [ -z "${interpreters[$version]:-}" ]; then
        echo "  $version: not found on this machine, not run"
        continue
    fi
    echo "  $(patch_version ".venv-$version/bin/python") (.venv-$version," \
        "${interpreters[$version]}): pytest -m '$QUICK':" \
        "$(result "$(cat ".venv-$version/pytest.status" 2>/dev/null || echo 1)")" \
        "- $(tail -n 1 ".venv-$version/pytest.log" 2>/dev/null)"
done
exit "$status"
