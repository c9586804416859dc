#!/bin/sh
# Installs the Debian packages `make images` needs (infra/smartnation/tooling/images/):
# - mmdebstrap: the root filesystems, from the machine's own apt sources;
# - umoci: turns a root filesystem layer into an OCI image; skopeo: copies it into a registry;
# - docker-registry (CNCF distribution): the local registry that stands for each site's registry;
# - cmake, gcc, make, postgresql-server-dev-15, libssl-dev, libkrb5-dev: TimescaleDB from source.
# Go (for MinIO, mc and the placeholder API) is the toolchain's own prerequisite, not installed here.
#
# Idempotent: when every package is already installed it does nothing, not even `apt-get update`.
# Debian's docker-registry package starts a registry on :5000; the project runs its own per site
# on loopback, so the package's service is stopped and disabled.
set -eu

PACKAGES="mmdebstrap umoci skopeo docker-registry cmake gcc make libc6-dev postgresql-server-dev-15 libssl-dev libkrb5-dev"

if [ "$(id -u)" -ne 0 ]; then
    echo "image-deps: must run as root (it installs Debian packages)" >&2
    exit 1
fi

missing=""
for pkg in $PACKAGES; do
    if ! dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null | grep -qx installed; then
        missing="$missing $pkg"
    fi
done

if [ -n "$missing" ]; then
    echo "image-deps: installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # shellcheck disable=SC2086 # word splitting of the package list is intended
    apt-get install -y -q --no-install-recommends $missing
else
    echo "image-deps: all of $PACKAGES already installed"
fi

if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    systemctl disable --now docker-registry >/dev/null 2>&1 || true
elif command -v service >/dev/null 2>&1; then
    service docker-registry stop >/dev/null 2>&1 || true
fi

# Fail here, with the name of what is missing, rather than in the middle of a build.
for bin in /usr/bin/mmdebstrap /usr/bin/umoci /usr/bin/skopeo /usr/bin/docker-registry /usr/bin/cmake \
    /usr/lib/postgresql/15/bin/pg_config; do
    if [ ! -x "$bin" ]; then
        echo "image-deps: $bin is missing after install" >&2
        exit 1
    fi
done
echo "image-deps: ready"
