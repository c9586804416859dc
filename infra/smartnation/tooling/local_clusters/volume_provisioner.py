"""The local clusters' volume provisioner: the stand-in for the cloud's CSI provisioner.

Düsseldorf provisions EVS disks through the everest CSI driver, Monaco Ceph RBD images through
Rook; a local cluster has neither, and a real kubelet cannot mount a volume of a made-up CSI
driver. So one host process per cluster (started by `make clusters`, see
volume_provisioner_service.py) watches the cluster's claims of the profile's storage classes and
gives each a PersistentVolume of type ``local`` on a directory of this host, under
``<cache>/clusters/real-nodes/<cluster>/volumes/``:

- why ``local`` and not ``hostPath``: the kubelet applies a Pod's fsGroup to local volumes (not to
  hostPath ones), so the platform's non-root daemons can write their data, as on a cloud disk;
- why a directory of this host stands for a network disk: every real node of a cluster runs on
  this host, in the host's mount namespace, so the directory is reachable from any of them. The
  volume's node affinity therefore admits every node of the cluster (all carry
  ``smartnation.mc/node-kind``), except for WaitForFirstConsumer classes, where it names the node
  the scheduler chose, as a topology-aware CSI driver would. A directory has no size limit: the
  capacity is the claim's request, not enforced.

Decisions follow the CSI external-provisioner (local_volumes.py holds them, pure):
Immediate classes at once, WaitForFirstConsumer classes once the scheduler annotated
``volume.kubernetes.io/selected-node``; the volume is pre-bound to the claim (claimRef with its
UID) and kube-controller-manager's PV controller binds the claim. A Released volume whose policy
is Delete loses its directory, then its object (the data of a deleted claim goes); Retain keeps
both. A class without dynamic provisioning (``kubernetes.io/no-provisioner``, Monaco's local
NVMe) gets pre-made volumes instead, one free at a time up to the profile's volume_pool.count,
as local-static-provisioner publishes a site's disks.

It watches, it does not poll: one HTTPS watch per resource (stdlib http.client and ssl, the
cluster's admin client certificate), a list first and a watch from its resourceVersion, a relist
on 410 Gone or a broken connection. Idle, its threads block on their sockets.

    python -m smartnation.tooling.local_clusters.volume_provisioner CONFIG.json
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import queue
import shutil
import signal
import ssl
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path

from smartnation.tooling.local_clusters.local_volumes import (
    CreateVolume,
    DeleteVolume,
    ProvisionerConfig,
    claim_key,
    directory_of,
    ours,
    plan,
)

log = logging.getLogger("volume-provisioner")

CLAIMS = "persistentvolumeclaims"
VOLUMES = "persistentvolumes"
WATCH_SECONDS = 600
"""Each watch asks the server to end it after this long (it then resumes from where it was):
a dead connection the kernel did not notice is found within this time."""
RETRY_SECONDS = 5.0


class ApiError(RuntimeError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


class Gone(RuntimeError):
    """The watch's resourceVersion is too old (410): list again."""


class Api:
    """The few calls the provisioner makes, over HTTPS with the admin client certificate."""

    def __init__(self, config: ProvisionerConfig) -> None:
        url = urllib.parse.urlsplit(config.server)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 443
        self.context = ssl.create_default_context(cafile=config.ca_file)
        self.context.load_cert_chain(config.cert_file, config.key_file)

    def connect(self, timeout: float) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(self.host, self.port, context=self.context, timeout=timeout)

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        conn = self.connect(30)
        try:
            payload = json.dumps(body).encode() if body is not None else None
            headers = {"Accept": "application/json", "Content-Type": "application/json"}
            conn.request(method, path, body=payload, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        try:
            parsed = json.loads(data) if data else {}
        except ValueError:
            parsed = {"message": data[:200].decode(errors="replace")}
        return resp.status, parsed

    def list(self, resource: str) -> tuple[list[dict], str]:
        items: list[dict] = []
        token = ""
        while True:
            query = urllib.parse.urlencode({"limit": 500, **({"continue": token} if token else {})})
            status, body = self.call("GET", f"/api/v1/{resource}?{query}")
            if status != 200:
                raise ApiError(status, body.get("message", ""))
            items.extend(body.get("items") or [])
            token = (body.get("metadata") or {}).get("continue", "")
            if not token:
                return items, body["metadata"]["resourceVersion"]

    def watch(self, resource: str, resource_version: str) -> Iterator[dict]:
        """The watch's events, one JSON object per line of the chunked response."""
        query = urllib.parse.urlencode(
            {
                "watch": "true",
                "resourceVersion": resource_version,
                "allowWatchBookmarks": "true",
                "timeoutSeconds": WATCH_SECONDS,
            }
        )
        # The socket timeout is only a backstop beyond the server's own end of the watch.
        conn = self.connect(WATCH_SECONDS + 60)
        try:
            conn.request("GET", f"/api/v1/{resource}?{query}", headers={"Accept": "application/json"})
            resp = conn.getresponse()
            if resp.status == 410:
                raise Gone(resource)
            if resp.status != 200:
                raise ApiError(resp.status, resp.read()[:300].decode(errors="replace"))
            while line := resp.readline():
                if line.strip():
                    yield json.loads(line)
        finally:
            conn.close()


def watch_forever(api: Api, resource: str, events: queue.Queue, stopping: threading.Event) -> None:
    """List, then watch from the list's resourceVersion; relist on 410 Gone or any failure.
    Puts ("sync", resource, items) and ("event", resource, type, object) on ``events``."""
    backoff = 1.0
    while not stopping.is_set():
        try:
            items, version = api.list(resource)
            events.put(("sync", resource, items))
            while not stopping.is_set():
                for event in api.watch(resource, version):
                    kind, obj = event.get("type"), event.get("object") or {}
                    if kind == "ERROR":
                        if obj.get("code") == 410:
                            raise Gone(resource)
                        raise ApiError(obj.get("code", 0), obj.get("message", ""))
                    version = (obj.get("metadata") or {}).get("resourceVersion", version)
                    if kind != "BOOKMARK":
                        events.put(("event", resource, kind, obj))
                    backoff = 1.0  # the watch works again
        except Gone:
            log.info("%s: resourceVersion expired, listing again", resource)
        except (OSError, http.client.HTTPException, ApiError, ValueError) as exc:
            log.warning("%s: watch failed (%s); listing again in %.0fs", resource, exc, backoff)
            stopping.wait(backoff)
            backoff = min(backoff * 2, 30.0)


class Provisioner:
    """Keeps the claims and volumes the watches report and acts on them."""

    def __init__(self, config: ProvisionerConfig, api: Api) -> None:
        self.config = config
        self.api = api
        self.objects: dict[str, dict[str, dict]] = {CLAIMS: {}, VOLUMES: {}}
        self.synced: set[str] = set()

    @staticmethod
    def key(resource: str, obj: dict) -> str:
        return claim_key(obj) if resource == CLAIMS else obj["metadata"]["name"]

    def take(self, message: tuple) -> None:
        if message[0] == "stop":
            return
        if message[0] == "sync":
            _, resource, items = message
            self.objects[resource] = {self.key(resource, o): o for o in items}
            if resource not in self.synced:
                self.synced.add(resource)
                log.info("%s: %d listed", resource, len(items))
            return
        _, resource, kind, obj = message
        key = self.key(resource, obj)
        if kind == "DELETED":
            self.objects[resource].pop(key, None)
            if resource == VOLUMES:
                self.volume_gone(obj)
        else:
            self.objects[resource][key] = obj

    def volume_gone(self, volume: dict) -> None:
        """A volume of ours deleted by someone else (kubectl delete pv): its directory goes with it
        when its policy is Delete, as a cloud disk would."""
        directory = directory_of(volume, self.config)
        if (
            directory is not None
            and ours(volume, self.config)
            and volume["spec"].get("persistentVolumeReclaimPolicy") == "Delete"
            and directory.exists()
        ):
            shutil.rmtree(directory)
            log.info("%s: deleted; removed %s", volume["metadata"]["name"], directory)

    def new_name(self, storage_class: str) -> str:
        return f"{storage_class}-{uuid.uuid4().hex[:12]}"

    def reconcile(self) -> bool:
        """Carries out what the plan says; False when something failed (to be tried again)."""
        if self.synced != {CLAIMS, VOLUMES}:
            return True
        ok = True
        for action in plan(self.objects[CLAIMS].values(), self.objects[VOLUMES].values(), self.config, self.new_name):
            try:
                if isinstance(action, CreateVolume):
                    self.create(action)
                else:
                    self.delete(action)
            except (OSError, http.client.HTTPException, ApiError) as exc:
                log.error("%s failed: %s (trying again in %.0fs)", action.reason, exc, RETRY_SECONDS)
                ok = False
        return ok

    def create(self, action: CreateVolume) -> None:
        name = action.volume["metadata"]["name"]
        began = time.monotonic()
        action.directory.mkdir(parents=True, exist_ok=True)
        status, body = self.api.call("POST", "/api/v1/persistentvolumes", action.volume)
        if status == 409:
            log.info("%s: already exists", name)
            return
        if status != 201:
            raise ApiError(status, body.get("message", ""))
        self.objects[VOLUMES][name] = body
        log.info("%s: created at %s for %s in %.3fs", name, action.directory, action.reason, time.monotonic() - began)

    def delete(self, action: DeleteVolume) -> None:
        if action.directory is not None and action.directory.exists():
            shutil.rmtree(action.directory)
        options = {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"uid": action.uid}}
        status, body = self.api.call("DELETE", f"/api/v1/persistentvolumes/{action.name}", options)
        if status not in (200, 202, 404, 409):  # 409: another object of that name now
            raise ApiError(status, body.get("message", ""))
        self.objects[VOLUMES].pop(action.name, None)
        removed = f"; removed {action.directory}" if action.directory else ""
        log.info("%s: deleted, %s%s", action.name, action.reason, removed)

    def report_orphans(self) -> None:
        """Directories whose volume is gone while we were down: kept (their policy is unknown now,
        and data is never removed on a guess), and named in the log."""
        root = Path(self.config.volumes_dir)
        if not root.is_dir():
            return
        known = set(self.objects[VOLUMES])
        for entry in sorted(root.iterdir()):
            if entry.is_dir() and entry.name not in known:
                log.warning("%s has no PersistentVolume; kept (remove it by hand if its data is not needed)", entry)

    def run(self, events: queue.Queue, stopping: threading.Event) -> None:
        retry_at: float | None = None
        orphans_reported = False
        while not stopping.is_set():
            timeout = None if retry_at is None else max(0.0, retry_at - time.monotonic())
            try:
                self.take(events.get(timeout=timeout))
                while True:  # a burst of events, one reconcile
                    self.take(events.get_nowait())
            except queue.Empty:
                pass
            if stopping.is_set():
                return
            ok = self.reconcile()
            retry_at = None if ok else time.monotonic() + RETRY_SECONDS
            if not orphans_reported and self.synced == {CLAIMS, VOLUMES}:
                self.report_orphans()
                orphans_reported = True


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m smartnation.tooling.local_clusters.volume_provisioner CONFIG.json", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
        stream=sys.stderr,
    )
    config = ProvisionerConfig.from_json(Path(args[0]).read_text())
    api = Api(config)
    events: queue.Queue = queue.Queue()
    stopping = threading.Event()

    def stop(signum, _frame) -> None:
        log.info("signal %d: stopping", signum)
        stopping.set()
        events.put(("stop",))  # wakes the main loop

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    classes = ", ".join(f"{c.name} ({c.binding_mode}, {c.reclaim_policy})" for c in config.classes)
    log.info("cluster %s, API %s, volumes in %s", config.cluster, config.server, config.volumes_dir)
    log.info("classes: %s", classes)
    for resource in (CLAIMS, VOLUMES):
        threading.Thread(target=watch_forever, args=(api, resource, events, stopping), daemon=True).start()
    with contextlib.suppress(KeyboardInterrupt):
        Provisioner(config, api).run(events, stopping)
    return 0


if __name__ == "__main__":
    sys.exit(main())
