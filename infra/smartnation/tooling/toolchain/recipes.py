"""How each pinned tool is built, and how a binary is asked its version."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from smartnation.tooling.toolchain.gobuild import (
    GoRunner,
    StepError,
    build_in_wrapper,
    download_module,
    read_go_mod,
    writable_module_copy,
)
from smartnation.tooling.toolchain.versions import Pin

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Recipe:
    """A tool: the binaries it provides, how to read a binary's version, how to build it."""

    name: str
    binaries: tuple[str, ...]
    version_args: tuple[str, ...]
    version_pattern: str
    build: Callable[[GoRunner, Pin, Path, Progress], None]
    versioned: int = 0
    """How many of `binaries` (from the front) report the version; 0 means all of them."""

    special: tuple[tuple[str, tuple[str, ...], str], ...] = ()
    """(binary, version args, pattern) for binaries that are asked differently from the rest."""

    on_path: bool = True
    """Linked into the cache's bin/ (the PATH entry); plugins are installed for the CLI instead."""
    probe: Callable[[Path], str | None] | None = None
    """Asks a binary its version another way than running it with version_args."""

    def missing_binaries(self, bin_dir: Path) -> list[str]:
        """The binaries a finished build lacks: a cache built before the recipe grew (kubelet and
        kube-proxy joined the kubernetes tool later) is incomplete and gets built again."""
        return [b for b in self.binaries if not (bin_dir / b).exists()]

    def versioned_binaries(self) -> tuple[str, ...]:
        return self.binaries[: self.versioned] if self.versioned else self.binaries

    def reported_version(self, binary: Path | str) -> str | None:
        """The version a binary reports, or None when it cannot run or says nothing we recognise."""
        if self.probe is not None:
            return self.probe(Path(binary))
        command, pattern = [str(binary), *self.version_args], self.version_pattern
        for name, special_args, special_pattern in self.special:
            if Path(binary).name == name:
                # "{binary}" in the special args stands for the binary's path.
                command = [a.replace("{binary}", str(binary)) for a in special_args]
                if "{binary}" not in " ".join(special_args):
                    command = [str(binary), *special_args]
                pattern = special_pattern
        try:
            out = subprocess.run(command, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        match = re.search(pattern, out.stdout + out.stderr)
        return match.group(1) if match else None


def _provider_plugin_version(binary: Path) -> str | None:
    """The version a resource provider plugin reports in GetPluginInfo."""
    import grpc
    from google.protobuf import empty_pb2
    from pulumi.runtime.proto import provider_pb2_grpc

    # The engine address is only dialled lazily; the provider serves GetPluginInfo without it.
    proc = subprocess.Popen([str(binary), "127.0.0.1:1"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        port = proc.stdout.readline().strip() if proc.stdout else ""
        if not port.isdigit():
            return None
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            info = provider_pb2_grpc.ResourceProviderStub(channel).GetPluginInfo(empty_pb2.Empty(), timeout=15)
        return info.version or None
    except grpc.RpcError:
        return None
    finally:
        proc.kill()
        proc.wait()


def _build_pulumi(go: GoRunner, pin: Pin, out: Path, progress: Progress) -> None:
    build_in_wrapper(
        go,
        tool=pin.name,
        module=pin.module,
        version=pin.module_version,
        packages=["github.com/pulumi/pulumi/pkg/v3/cmd/pulumi"],
        out_dir=out,
        # pkg/v3 replaces sdk/v3 with ../sdk; the published sdk at the same tag is its twin.
        extra_requires=[f"github.com/pulumi/pulumi/sdk/v3@{pin.module_version}"],
        ldflags=f"-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v{pin.version}",
        progress=progress,
    )


LANGUAGE_HOST_MODULE = "smartnation.tooling.toolchain.language_host"
"""Our Python language host (language_host.py), by module name: importing it needs grpc."""


def _build_language_python(go: GoRunner, pin: Pin, out: Path, progress: Progress) -> None:
    """Our language host shim plus the SDK's own program runner, taken from sdk/v3."""
    progress("downloading pulumi-language-python-exec")
    work = go.cache.work / f"{pin.name}-{pin.version}"
    work.mkdir(parents=True, exist_ok=True)
    info = download_module(go, pin.exec_module, pin.exec_module_version, work)
    exec_src = Path(info["Dir"]) / "python" / "cmd" / "pulumi-language-python-exec"
    if not exec_src.is_file():
        raise StepError("download", f"{exec_src} is not in {pin.exec_module}@{pin.exec_module_version}")
    shutil.copy(exec_src, out / "pulumi-language-python-exec")
    (out / "pulumi-language-python-exec").chmod(0o755)
    # The shim runs the host with the project's virtualenv, which holds grpc and the SDK.
    # `bootstrap` rewrites SMARTNATION_PYTHON below when it links the shim into bin/.
    shim = out / "pulumi-language-python"
    shim.write_text(
        "#!/bin/sh\n"
        "# smartnation's Python language host (see smartnation/toolchain/language_host.py).\n"
        f'SMARTNATION_LANGUAGE_HOST_VERSION="{pin.version}"\n'
        'SMARTNATION_LANGUAGE_DIR="$(cd "$(dirname "$0")" && pwd)"\n'
        "export SMARTNATION_LANGUAGE_HOST_VERSION SMARTNATION_LANGUAGE_DIR\n"
        f'exec "${{SMARTNATION_PYTHON:-python3}}" -m {LANGUAGE_HOST_MODULE} "$@"\n'
    )
    shim.chmod(0o755)


def _kube_ldflags(version: str) -> str:
    major, minor, _ = version.split(".")
    flags = []
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {pkg}.gitVersion=v{version}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
            f"-X {pkg}.buildDate=1970-01-01T00:00:00Z",
        ]
    return " ".join(flags)


def _build_kubernetes(go: GoRunner, pin: Pin, out: Path, progress: Progress) -> None:
    build_in_wrapper(
        go,
        tool=pin.name,
        module=pin.module,
        version=pin.module_version,
        packages=[
            "k8s.io/kubernetes/cmd/kube-apiserver",
            "k8s.io/kubernetes/cmd/kube-controller-manager",
            "k8s.io/kubernetes/cmd/kube-scheduler",
            "k8s.io/kubernetes/cmd/kubectl",
            # The real nodes' agents (local_clusters/real_nodes.py): same module, same build.
            "k8s.io/kubernetes/cmd/kubelet",
            "k8s.io/kubernetes/cmd/kube-proxy",
        ],
        out_dir=out,
        ldflags=_kube_ldflags(pin.version),
        progress=progress,
    )


def _simple(packages: list[str], ldflags: Callable[[Pin], str] = lambda _: "") -> Callable[..., None]:
    def build(go: GoRunner, pin: Pin, out: Path, progress: Progress) -> None:
        build_in_wrapper(
            go,
            tool=pin.name,
            module=pin.module,
            version=pin.module_version,
            packages=packages,
            out_dir=out,
            ldflags=ldflags(pin),
            # Dependencies the pin raises above the module's own go.mod (security fixes).
            extra_requires=pin.requires,
            progress=progress,
        )

    return build


def _build_etcd(go: GoRunner, pin: Pin, out: Path, progress: Progress) -> None:
    _simple(["go.etcd.io/etcd/server/v3"])(go, pin, out, progress)
    # go names a binary after the last path element that is not a major version: "server".
    (out / "server").rename(out / "etcd")


def _build_kwok(go: GoRunner, pin: Pin, out: Path, progress: Progress) -> None:
    _simple(["sigs.k8s.io/kwok/cmd/kwok", "sigs.k8s.io/kwok/cmd/kwokctl"])(go, pin, out, progress)
    # kwok forgets its default node and pod stages once a cluster brings its own (ours add
    # volumes and load balancers), so keep kwok's own copies beside the binaries.
    stages = go.cache.gomodcache / f"{pin.module}@{pin.module_version}" / "kustomize" / "stage"
    dest = out.parent / "stages"
    dest.mkdir(exist_ok=True)
    for rel in (
        "node/fast/node-initialize.yaml",
        "node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
        "pod/fast/pod-ready.yaml",
        "pod/fast/pod-complete.yaml",
        "pod/fast/pod-delete.yaml",
    ):
        shutil.copy(stages / rel, dest / Path(rel).name)


CERT_MANAGER_MAIN = Path(__file__).with_name("cert_manager_controller") / "main.go"
"""Our entry point to cert-manager's controllers (the proxy does not serve cert-manager's own)."""


def _build_cert_manager(go: GoRunner, pin: Pin, out: Path, progress: Progress) -> None:
    """cert-manager-controller: our main.go in a wrapper module that requires the pinned root
    module, so every dependency is at the version cert-manager's go.mod asks; then the module's
    CRDs (deploy/crds) beside the binary, for `make clusters` to apply."""
    work = go.cache.work / f"{pin.name}-{pin.module_version}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    progress("downloading module")
    info = download_module(go, pin.module, pin.module_version, work)
    target = read_go_mod(go, Path(info["GoMod"]), work)
    if target.get("Replace"):
        raise StepError("resolve", f"{pin.module}@{pin.module_version} has replace directives; carry them over")
    (work / "go.mod").write_text(f"module smartnation.local/toolchain/{pin.name}\n\ngo {target.get('Go') or '1.22'}\n")
    shutil.copy(CERT_MANAGER_MAIN, work / "main.go")
    requires = [f"-require={pin.module}@{pin.module_version}", *(f"-require={r}" for r in pin.requires)]
    go.run("resolve", ["go", "mod", "edit", *requires], work)
    progress("resolving dependencies")
    go.run("resolve", ["go", "mod", "tidy"], work)
    progress("compiling")
    ldflags = f"-X github.com/cert-manager/cert-manager/pkg/util.AppVersion=v{pin.version}"
    go.run(
        "build",
        ["go", "build", "-trimpath", "-ldflags", ldflags, "-o", str(out / "cert-manager-controller"), "."],
        work,
    )
    crds = sorted((Path(info["Dir"]) / "deploy" / "crds").glob("*.yaml"))
    if not crds:
        raise StepError("build", f"no CRDs in deploy/crds of {pin.module}@{pin.module_version}")
    dest = out.parent / "crds"
    dest.mkdir(exist_ok=True)
    for crd in crds:
        shutil.copy(crd, dest / crd.name)
        (dest / crd.name).chmod(0o644)


def _build_kubernetes_provider(go: GoRunner, pin: Pin, out: Path, progress: Progress) -> None:
    """The provider embeds schema-embed.json and terraform-mapping-embed.json, which its
    generate.go writes and the module zip lacks, so it is built from a writable copy."""
    progress("downloading module")
    src = writable_module_copy(go, pin.name, pin.module, pin.module_version)
    # provider/go.mod replaces sdk/v4 with ../sdk, which is outside the module.
    go.run(
        "resolve",
        [
            "go",
            "mod",
            "edit",
            "-dropreplace=github.com/pulumi/pulumi-kubernetes/sdk/v4",
            f"-require=github.com/pulumi/pulumi-kubernetes/sdk/v4@{pin.sdk_module_version}",
        ],
        src,
    )
    progress("resolving dependencies")
    go.run("resolve", ["go", "mod", "download"], src)
    progress("generating embedded schema")
    go.run(
        "generate",
        ["go", "run", "generate.go"],
        src / "cmd" / "pulumi-resource-kubernetes",
        extra_env={"VERSION": pin.version},
    )
    progress("compiling")
    go.run(
        "build",
        [
            "go",
            "build",
            "-trimpath",
            "-ldflags",
            f"-X github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version.Version={pin.version}",
            "-o",
            str(out) + "/",
            "./cmd/pulumi-resource-kubernetes",
        ],
        src,
    )


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe("pulumi", ("pulumi",), ("version",), r"v(\d+\.\d+\.\d+)", _build_pulumi),
        Recipe(
            "pulumi-language-python",
            ("pulumi-language-python", "pulumi-language-python-exec"),
            ("--version",),
            r"(\d+\.\d+\.\d+)",
            _build_language_python,
            versioned=1,  # the exec script is the SDK's and has no --version
            on_path=False,  # installed beside the pulumi binary by the bootstrap
        ),
        Recipe(
            "pulumi-resource-kubernetes",
            ("pulumi-resource-kubernetes",),
            ("-version",),
            r"(\d+\.\d+\.\d+)",
            _build_kubernetes_provider,
            # The provider has no --version flag: start it and ask it over gRPC, as the engine does.
            probe=_provider_plugin_version,
            # On PATH the CLI would load it as an "ambient" plugin, with a warning on every run.
            on_path=False,
        ),
        Recipe(
            "kubernetes",
            ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kubelet", "kube-proxy"),
            ("--version",),
            r"Kubernetes v(\d+\.\d+\.\d+)",
            _build_kubernetes,
            special=(("kubectl", ("version", "--client"), r"Client Version: v(\d+\.\d+\.\d+)"),),
        ),
        Recipe(
            "etcd",
            ("etcd",),
            ("--version",),
            r"etcd Version: (\d+\.\d+\.\d+)",
            _build_etcd,
        ),
        Recipe(
            "kwok",
            ("kwok", "kwokctl"),
            ("--version",),
            r"(\d+\.\d+\.\d+)",
            _build_kwok,
        ),
        Recipe(
            "helm",
            ("helm",),
            ("version", "--short"),
            r"v(\d+\.\d+\.\d+)",
            _simple(
                ["helm.sh/helm/v3/cmd/helm"],
                lambda pin: f"-X helm.sh/helm/v3/internal/version.version=v{pin.version}",
            ),
        ),
        Recipe(
            "coredns",
            ("coredns",),
            ("-version",),
            r"CoreDNS-(\d+\.\d+\.\d+)",
            # The module's root is the main package with the standard plugin set (kubernetes included).
            _simple(
                ["github.com/coredns/coredns"],
                lambda pin: f"-X github.com/coredns/coredns/coremain.GitCommit={pin.module_version}",
            ),
        ),
        Recipe(
            "kube-router",
            ("kube-router",),
            ("--version",),
            r"version v(\d+\.\d+\.\d+)",
            _simple(
                ["github.com/cloudnativelabs/kube-router/v2/cmd/kube-router"],
                lambda pin: (
                    f"-X github.com/cloudnativelabs/kube-router/v2/pkg/version.Version=v{pin.version}"
                    " -X github.com/cloudnativelabs/kube-router/v2/pkg/version.BuildDate=1970-01-01T00:00:00Z"
                ),
            ),
        ),
        Recipe(
            "cert-manager",
            ("cert-manager-controller",),
            ("--version",),
            r"cert-manager-controller v(\d+\.\d+\.\d+)",
            _build_cert_manager,
        ),
        Recipe(
            "actionlint",
            ("actionlint",),
            ("-version",),
            r"(\d+\.\d+\.\d+)",
            _simple(
                ["github.com/rhysd/actionlint/cmd/actionlint"],
                # Built inside our wrapper module, build info would say "(devel)".
                lambda pin: f"-X github.com/rhysd/actionlint.version={pin.version}",
            ),
        ),
    )
}
