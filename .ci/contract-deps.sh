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

WHO=contract-deps
# shellcheck source=.ci/debian-packages.sh
. "$(dirname "$0")/debian-packages.sh"
require_root
# shellcheck disable=SC2086 # word splitting of the package list is intended
ensure_packages $PACKAGES
stop_service mosquitto
stop_service postgresql
if command -v pg_lsclusters >/dev/null 2>&1; then
    pg_lsclusters --no-header 2>/dev/null | while read -r version cluster _rest; do
        pg_ctlcluster --force "$version" "$cluster" stop >/dev/null 2>&1 || true
    done
fi
require_executables /usr/sbin/mosquitto /usr/bin/mosquitto_passwd /usr/bin/mosquitto_pub /usr/bin/mosquitto_sub \
    /usr/lib/postgresql/15/bin/initdb /usr/lib/postgresql/15/bin/pg_ctl /usr/bin/psql /usr/bin/openssl
echo "contract-deps: ready"
