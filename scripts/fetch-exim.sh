#!/usr/bin/env bash
# Fetch Exim (Debian's exim4-daemon-light) into a folder of its own, for the tests that
# use it as a BDAT-sending client. Exim's package conflicts with Postfix's, so it is not
# installed: its .deb files are downloaded and unpacked with `dpkg -x`, and the tests run
# the binary from there with a configuration of their own (`exim -C`).
#
# Besides Exim itself this unpacks libidn12 (a library Exim links and the base system may
# lack) and libnss-wrapper: Exim looks up its compiled-in user "Debian-exim" at start-up,
# and nss_wrapper (LD_PRELOAD) lets the tests name that user in a passwd file of their own
# instead of adding a user to the system.
#
# Usage: scripts/fetch-exim.sh [DIR]   (default: $SMTPKIT_EXIM_DIR, else ~/.cache/smtpkit-peers/exim)
# Does nothing when DIR already holds the binary. Needs apt-get (Debian); without it, it
# only reports, and the tests that need Exim are skipped outside CI.
set -euo pipefail

dest="${1:-${SMTPKIT_EXIM_DIR:-$HOME/.cache/smtpkit-peers/exim}}"
packages=(exim4-daemon-light libidn12 libnss-wrapper)

if [ -x "$dest/usr/sbin/exim4" ] && compgen -G "$dest/usr/lib/*/libnss_wrapper.so" >/dev/null; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg >/dev/null 2>&1; then
    echo "fetch-exim: apt-get and dpkg are needed to fetch ${packages[*]}" >&2
    exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# apt's download user must be able to write the .deb files here.
chmod 0777 "$work"
cd "$work"
if ! apt-get download -qq "${packages[@]}" 2>/dev/null; then
    # Stale or missing package lists: only root can refresh them.
    if [ "$(id -u)" != 0 ]; then
        echo "fetch-exim: apt-get download ${packages[*]} failed; run apt-get update as root" >&2
        exit 0
    fi
    apt-get update -qq
    apt-get download -qq "${packages[@]}"
fi
mkdir -p "$dest"
for deb in ./*.deb; do
    dpkg -x "$deb" "$dest"
done
# The tests run it as the user who runs them, with LD_PRELOAD: no set-uid bit wanted.
chmod u-s "$dest/usr/sbin/exim4"
echo "fetch-exim: Exim unpacked in $dest" >&2
