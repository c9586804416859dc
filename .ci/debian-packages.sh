#!/bin/sh
# Shared by .ci/contract-deps.sh, .ci/image-deps.sh and .ci/node-deps.sh (sourced, not run):
# install what is missing from Debian, stop the services those packages start on their own, and
# fail early, naming the file, when something is still missing after the install.
#
# Idempotent: when every package is already installed nothing is installed, not even
# `apt-get update`, so each script is cheap to call before every run.
# Each caller sets WHO (the prefix of its messages) before sourcing this file.

require_root() {
    if [ "$(id -u)" -ne 0 ]; then
        echo "$WHO: must run as root (it installs Debian packages)" >&2
        exit 1
    fi
}

# ensure_packages PKG...: apt-get install the ones not installed yet.
ensure_packages() {
    missing=""
    for pkg in "$@"; do
        if ! dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null | grep -qx installed; then
            missing="$missing $pkg"
        fi
    done
    if [ -n "$missing" ]; then
        echo "$WHO: installing$missing"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q
        # shellcheck disable=SC2086 # word splitting of the package list is intended
        apt-get install -y -q --no-install-recommends $missing
    else
        echo "$WHO: all of $* already installed"
    fi
}

# stop_service NAME: a daemon the package started for itself (with or without systemd:
# containers often have neither, and then there is nothing to stop). A stray service on the
# machine only hides mistakes: the project runs its own copies on loopback.
stop_service() {
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        systemctl disable --now "$1" >/dev/null 2>&1 || true
    elif command -v service >/dev/null 2>&1; then
        service "$1" stop >/dev/null 2>&1 || true
    fi
}

# require_executables PATH...: fail here, naming what is missing, rather than halfway through.
require_executables() {
    for bin in "$@"; do
        if [ ! -x "$bin" ]; then
            echo "$WHO: $bin is missing after install" >&2
            exit 1
        fi
    done
}
