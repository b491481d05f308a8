#!/usr/bin/env bash
# Install the real SMTP peers the interoperability tests talk to: swaks, openssl,
# haproxy, and Postfix (for smtp-source/smtp-sink), and the browser the capture UI
# tests drive (Chromium and chromedriver), nginx's mail proxy, Prometheus, and
# Exim (unpacked by fetch-exim.sh). Uses Debian's packages; does
# nothing for a tool that is already there. Without root or apt-get it only reports.
set -euo pipefail

need=()
command -v swaks >/dev/null 2>&1 || need+=(swaks)
# swaks speaks TLS through these Perl modules (only "recommended" by its package).
perl -MNet::SSLeay -e1 >/dev/null 2>&1 || need+=(libnet-ssleay-perl)
perl -MIO::Socket::SSL -e1 >/dev/null 2>&1 || need+=(libio-socket-ssl-perl)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
[ -x /usr/sbin/smtp-source ] || need+=(postfix)
# The capture UI's browser tests (tests/browser/): headless Chromium and its WebDriver.
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -x /usr/bin/chromedriver ] || need+=(chromium-driver)
# nginx's mail proxy, in front of smtpkit for the XCLIENT tests.
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
[ -f /usr/lib/nginx/modules/ngx_mail_module.so ] || need+=(libnginx-mod-mail)

# A real Prometheus scrapes smtpkit run --http in the metrics test.
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)

# Exim cannot be installed beside Postfix: it is unpacked into a folder of its own.
bash "$(dirname "$0")/fetch-exim.sh"

if [ ${#need[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "install-peers: missing ${need[*]}; install them (Debian: apt-get install ${need[*]})" >&2
    echo "install-peers: the tests that need them are skipped outside CI" >&2
    exit 0
fi
echo "install-peers: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# Postfix is only needed for its tools: install it with no mail configuration.
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
apt-get update -qq
# The tests start the daemons they need with configurations of their own: keep the
# packages' scripts from starting system services (nginx on port 80, Postfix) meanwhile.
policy=/usr/sbin/policy-rc.d
own_policy=
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
    own_policy=1
fi
status=0
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null || status=$?
[ -n "$own_policy" ] && rm -f "$policy"
exit "$status"
