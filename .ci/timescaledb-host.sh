#!/bin/sh
# Builds TimescaleDB from the vendored source for the host's PostgreSQL 15 and installs it into
# Debian's PostgreSQL directories, so the services' contract tests (services/*/tests/) can run a
# real hypertable on a throwaway loopback cluster.
#
# Cached and idempotent: the build is staged once under $SMARTNATION_CACHE (default
# ~/.cache/smartnation)/timescaledb-host/<version>-pg15-<postgresql-server-dev version>; a later
# run only copies the staged files into / when the installed copy is missing or differs.
# Needs (from .ci/contract-deps.sh and .ci/image-deps.sh): cmake, gcc, postgresql-server-dev-15,
# libssl-dev, libkrb5-dev. Runs offline.
set -eu

VERSION=2.17.2
MAJOR=15
HERE=$(cd "$(dirname "$0")" && pwd)
ARCHIVE=${TIMESCALEDB_ARCHIVE:-$HERE/../../shared/vendor/timescaledb-$VERSION.tar.gz}
PG_CONFIG=/usr/lib/postgresql/$MAJOR/bin/pg_config
CACHE=${SMARTNATION_CACHE:-$HOME/.cache/smartnation}

if [ "$(id -u)" -ne 0 ]; then
    echo "timescaledb-host: must run as root (it installs into /usr/lib/postgresql)" >&2
    exit 1
fi
for tool in cmake cc "$PG_CONFIG"; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "timescaledb-host: $tool is missing (cmake, gcc, postgresql-server-dev-$MAJOR, libssl-dev, libkrb5-dev)" >&2
        exit 1
    fi
done
if [ ! -f "$ARCHIVE" ]; then
    echo "timescaledb-host: $ARCHIVE is missing (see /work/shared/vendor/README.md)" >&2
    exit 1
fi

DEV_VERSION=$(dpkg-query -W -f='${Version}' "postgresql-server-dev-$MAJOR")
STAGE="$CACHE/timescaledb-host/$VERSION-pg$MAJOR-$DEV_VERSION"

if [ ! -f "$STAGE/.done" ]; then
    echo "timescaledb-host: building TimescaleDB $VERSION for PostgreSQL $MAJOR ($DEV_VERSION)"
    WORK=$(mktemp -d)
    trap 'rm -rf "$WORK"' EXIT
    tar -xzf "$ARCHIVE" -C "$WORK"
    SRC=$(find "$WORK" -mindepth 1 -maxdepth 1 -type d | head -n 1)
    cmake -S "$SRC" -B "$WORK/build" -DPG_CONFIG="$PG_CONFIG" -DCMAKE_BUILD_TYPE=Release \
        -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF -DWARNINGS_AS_ERRORS=OFF -DSEND_TELEMETRY_DEFAULT=OFF >"$WORK/configure.log"
    cmake --build "$WORK/build" -j"$(nproc)" >"$WORK/build.log"
    rm -rf "$STAGE"
    mkdir -p "$STAGE"
    DESTDIR="$STAGE" cmake --install "$WORK/build" >"$WORK/install.log"
    touch "$STAGE/.done"
fi

# Copy into / only what differs (cmp), so a second run changes nothing.
changed=0
for file in $(cd "$STAGE" && find usr -type f); do
    if ! cmp -s "$STAGE/$file" "/$file"; then
        mkdir -p "$(dirname "/$file")"
        cp "$STAGE/$file" "/$file"
        changed=$((changed + 1))
    fi
done
echo "timescaledb-host: TimescaleDB $VERSION ready for PostgreSQL $MAJOR ($changed files installed)"
