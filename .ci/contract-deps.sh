#!/bin/sh
# Installs the Debian packages the contract tests run for real (tests/contract/):
# mosquitto + its clients, PostgreSQL 15 and the openssl CLI.
#
# Idempotent: when every package is already installed it does nothing, not even
# `apt-get update`, so it is cheap to call before every contract run.
#
# Debian's postgresql package creates and starts a default cluster on 5432 and the
# mosquitto package starts a broker on 1883. The contract tests start their own
# throwaway daemons on free loopback ports and never use those, so we stop and
# disable them: a stray service listening on the machine only hides mistakes.
set -eu

# procps and iproute2: `ps` and `ss`, which testinfra uses for the process and socket checks.
PACKAGES="mosquitto mosquitto-clients postgresql openssl procps iproute2 shellcheck"

if [ "$(id -u)" -ne 0 ]; then
    echo "contract-deps: must run as root (it installs Debian packages)" >&2
    exit 1
fi

missing=""
for pkg in $PACKAGES; do
    if ! dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null | grep -qx installed; then
        missing="$missing $pkg"
    fi
done

if [ -n "$missing" ]; then
    echo "contract-deps: installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # shellcheck disable=SC2086 # word splitting of the package list is intended
    apt-get install -y -q --no-install-recommends $missing
else
    echo "contract-deps: all of $PACKAGES already installed"
fi

# Stop the package's default services if something started them (with or without
# systemd: containers often have neither, and then there is nothing to stop).
stop_service() {
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        systemctl disable --now "$1" >/dev/null 2>&1 || true
    elif command -v service >/dev/null 2>&1; then
        service "$1" stop >/dev/null 2>&1 || true
    fi
}
stop_service mosquitto
stop_service postgresql
if command -v pg_lsclusters >/dev/null 2>&1; then
    pg_lsclusters --no-header 2>/dev/null | while read -r version cluster _rest; do
        pg_ctlcluster --force "$version" "$cluster" stop >/dev/null 2>&1 || true
    done
fi

# Fail here, with the name of what is missing, rather than in the middle of a test.
for bin in /usr/sbin/mosquitto /usr/bin/mosquitto_passwd /usr/bin/mosquitto_pub /usr/bin/mosquitto_sub \
    /usr/lib/postgresql/15/bin/initdb /usr/lib/postgresql/15/bin/pg_ctl /usr/bin/psql /usr/bin/openssl; do
    if [ ! -x "$bin" ]; then
        echo "contract-deps: $bin is missing after install" >&2
        exit 1
    fi
done
echo "contract-deps: ready"
