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

WHO=image-deps
# shellcheck source=.ci/debian-packages.sh
. "$(dirname "$0")/debian-packages.sh"
require_root
# shellcheck disable=SC2086 # word splitting of the package list is intended
ensure_packages $PACKAGES
stop_service docker-registry
require_executables /usr/bin/mmdebstrap /usr/bin/umoci /usr/bin/skopeo /usr/bin/docker-registry /usr/bin/cmake \
    /usr/lib/postgresql/15/bin/pg_config
echo "image-deps: ready"
