#!/usr/bin/env bash
# Install what the benchmark compares smtpkit with:
#   - aiosmtpd 1.4.6, with the same uvloop as the project, in bench/.venv-peers
#     (never in the project's own virtualenv);
#   - Postfix, for its smtp-source load generator and smtp-sink reference server.
# run.py calls this when something is missing; running it again is harmless.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
python="${PYTHON:-$here/../.venv/bin/python}"
[ -x "$python" ] || python="$(command -v python3)"

if [ ! -x "$here/.venv-peers/bin/python" ]; then
    "$python" -m venv "$here/.venv-peers"
fi
uvloop_version="$("$python" -c 'import uvloop; print(uvloop.__version__)' 2>/dev/null || true)"
uvloop_spec="uvloop${uvloop_version:+==$uvloop_version}"
"$here/.venv-peers/bin/python" -m pip install --quiet --disable-pip-version-check \
    "aiosmtpd==1.4.6" "$uvloop_spec"

has_tool() {
    command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/lib/postfix/$1" ]
}
if ! has_tool smtp-source || ! has_tool smtp-sink; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup.sh: smtp-source/smtp-sink not found; install Postfix (as root:" \
            "apt-get install postfix) and run again" >&2
        exit 1
    fi
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q postfix
fi
echo "setup.sh: peers ready ($("$here/.venv-peers/bin/python" -c \
    'import aiosmtpd, uvloop; print("aiosmtpd", aiosmtpd.__version__, "uvloop", uvloop.__version__)'))"
