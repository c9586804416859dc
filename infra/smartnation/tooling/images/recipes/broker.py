"""The broker image: Debian's Mosquitto in a root filesystem with no shell and no package manager.

Entrypoint contract (components/broker.py runs `mosquitto -c /mosquitto/config/mosquitto.conf`):
- user 1883:1883 (``mosquitto``), PATH has /usr/sbin, so the command ``mosquitto`` resolves;
- /mosquitto/config (the ConfigMap), /mosquitto/data (the PVC, owned by 1883) exist in the image;
- with no arguments it runs on a default config that admits nobody (listener 1883, no anonymous
  access, persistence in /mosquitto/data, log to stdout).
"""

from __future__ import annotations

from pathlib import Path

from smartnation.tooling.images import rootfs
from smartnation.tooling.images.builder import BuildContext, Recipe
from smartnation.tooling.images.oci import ImageConfig
from smartnation.tooling.images.pins import Pins
from smartnation.tooling.images.recipes import DEBIAN_PATH, labels

UID = 1883
CONFIG = "/mosquitto/config/mosquitto.conf"
DEFAULT_CONFIG = """\
# Default of smartnation's broker image: nobody may connect until a real config is mounted here.
listener 1883
allow_anonymous false
persistence true
persistence_location /mosquitto/data/
log_dest stdout
"""


def recipe(pins: Pins) -> Recipe:
    pin = pins.images["broker"]
    packages = [f"{name}={version}" for name, version in pin.debian_packages]

    def make(ctx: BuildContext, tree: Path) -> list[str]:
        manifest = rootfs.debian_rootfs(ctx.runner, pins, packages, tree)
        ctx.progress("trimming")
        # Debian's /etc/mosquitto expects /run and /var/log, which a read-only root lacks.
        rootfs.trim(tree, keep_executables=["usr/sbin/mosquitto"], extra=["etc/mosquitto"])
        rootfs.write_accounts(tree, [rootfs.Account("mosquitto", UID, "/mosquitto/data")])
        rootfs.make_dirs(tree, [("mosquitto/config", 0, 0o755), ("mosquitto/data", UID, 0o750)])
        rootfs.install_file(tree, CONFIG, DEFAULT_CONFIG)
        rootfs.finish(ctx.runner, tree, manifest)
        return manifest

    return Recipe(
        pin=pin,
        config=ImageConfig(
            user=f"{UID}:{UID}",
            entrypoint=("/usr/sbin/mosquitto",),
            cmd=("-c", CONFIG),
            env=(DEBIAN_PATH,),
            workdir="/mosquitto/data",
            ports=("1883/tcp", "8883/tcp"),
            labels=labels(pin, pins, "mosquitto", "Debian package mosquitto", "EPL-2.0 OR EDL-1.0"),
        ),
        make_rootfs=make,
        inputs={"debian_packages": packages},
        module_file=__file__,
        linked=("usr/sbin/mosquitto", "usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so"),
    )
