"""smartnation's Python language host: the `pulumi-language-python` plugin the CLI starts.

Why this exists: Pulumi's own host lives in the Go module
github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3, which has no release tags and
which the Go module proxy we can reach refuses at every version (403), so it cannot be built at a
sealed site. This host speaks the same `pulumirpc.LanguageRuntime` gRPC protocol through the
Python SDK's own generated stubs and runs programs exactly as the Go host does: with the SDK's
`pulumi-language-python-exec` (installed beside this launcher from github.com/pulumi/pulumi/sdk/v3
at the CLI's version) under the project's virtualenv. It implements what `pulumi preview`, `up`,
`destroy`, `refresh`, `about` and policy packs use; the rest answers UNIMPLEMENTED, which the CLI
handles as "not supported by this language".
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from concurrent import futures
from pathlib import Path

import grpc
from google.protobuf import empty_pb2
from pulumi.runtime.proto import language_pb2, language_pb2_grpc, plugin_pb2

VERSION = os.environ.get("SMARTNATION_LANGUAGE_HOST_VERSION", "0.0.0")
# The SDK's program runner is installed next to the launcher script that started us.
EXEC_SCRIPT = (
    Path(os.environ.get("SMARTNATION_LANGUAGE_EXEC", "")) if os.environ.get("SMARTNATION_LANGUAGE_EXEC") else None
)

# Pulumi exchanges large messages (a whole stack's state); the Go host allows 400 MiB too.
_MAX_MESSAGE = 400 * 1024 * 1024
_GRPC_OPTIONS = [("grpc.max_receive_message_length", _MAX_MESSAGE), ("grpc.max_send_message_length", _MAX_MESSAGE)]

# The exec script exits 32 after it has already shown the user an actionable message.
_EXIT_AFTER_USER_MESSAGE = 32

_LIST_PLUGINS = r"""
import json, importlib.metadata as md
seen = {}
for dist in md.distributions():
    for f in dist.files or []:
        if f.name == "pulumi-plugin.json":
            try:
                data = json.loads(f.read_text())
            except Exception:
                continue
            if data.get("resource") and data.get("name"):
                seen[data["name"]] = {"name": data["name"], "version": data.get("version", ""),
                                       "server": data.get("server", "")}
print(json.dumps(list(seen.values())))
"""

_LIST_DISTRIBUTIONS = r"""
import json, importlib.metadata as md
print(json.dumps(sorted({d.metadata["Name"]: d.version for d in md.distributions()}.items())))
"""


def _options(info: language_pb2.ProgramInfo | None) -> dict:
    if info is None or not info.HasField("options"):
        return {}
    from google.protobuf.json_format import MessageToDict

    return MessageToDict(info.options)


def python_for(info: language_pb2.ProgramInfo | None, fallback_root: str) -> str:
    """The interpreter of the program's virtualenv (runtime option `virtualenv`), as the Go host picks it."""
    opts = _options(info)
    venv = opts.get("virtualenv")
    if venv:
        root = info.root_directory if info is not None and info.root_directory else fallback_root
        path = Path(venv) if os.path.isabs(venv) else Path(root) / venv
        candidate = path / "bin" / "python"
        if not candidate.exists():
            raise FileNotFoundError(
                f"the virtualenv {path} named by Pulumi.yaml's runtime option 'virtualenv' does not exist: "
                "run `make venv` (or `make bootstrap`) first"
            )
        return str(candidate)
    return os.environ.get("SMARTNATION_PYTHON", sys.executable)


def _venv_env(python: str, extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    bin_dir = str(Path(python).parent)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    if (Path(bin_dir).parent / "pyvenv.cfg").exists():
        env["VIRTUAL_ENV"] = str(Path(bin_dir).parent)
    env.update(extra)
    return env


class LanguageHost(language_pb2_grpc.LanguageRuntimeServicer):
    def __init__(self, engine_address: str, exec_script: Path) -> None:
        self.engine_address = engine_address
        self.exec_script = exec_script
        self.root = os.getcwd()

    # -- handshake and identity ---------------------------------------------------------------
    def Handshake(self, request, context):  # noqa: N802 (gRPC method names)
        if request.engine_address:
            self.engine_address = request.engine_address
        if request.root_directory:
            self.root = request.root_directory
        return language_pb2.LanguageHandshakeResponse()

    def GetPluginInfo(self, request, context):  # noqa: N802
        return plugin_pb2.PluginInfo(version=VERSION)

    def About(self, request, context):  # noqa: N802
        python = python_for(request.info if request.HasField("info") else None, self.root)
        version = subprocess.run([python, "--version"], capture_output=True, text=True).stdout.strip()
        return language_pb2.AboutResponse(executable=python, version=version.removeprefix("Python "))

    # -- what the program needs ---------------------------------------------------------------
    def GetRequiredPlugins(self, request, context):  # noqa: N802
        python = python_for(request.info if request.HasField("info") else None, self.root)
        out = subprocess.run([python, "-c", _LIST_PLUGINS], capture_output=True, text=True, check=True).stdout
        plugins = [
            plugin_pb2.PluginDependency(name=p["name"], kind="resource", version=p["version"], server=p["server"])
            for p in json.loads(out)
        ]
        return language_pb2.GetRequiredPluginsResponse(plugins=plugins)

    def GetProgramDependencies(self, request, context):  # noqa: N802
        python = python_for(request.info if request.HasField("info") else None, self.root)
        out = subprocess.run([python, "-c", _LIST_DISTRIBUTIONS], capture_output=True, text=True, check=True).stdout
        deps = [language_pb2.DependencyInfo(name=n, version=v) for n, v in json.loads(out)]
        return language_pb2.GetProgramDependenciesResponse(dependencies=deps)

    # -- running ------------------------------------------------------------------------------
    def Run(self, request, context):  # noqa: N802
        info = request.info if request.HasField("info") else None
        try:
            python = python_for(info, self.root)
        except FileNotFoundError as exc:
            return language_pb2.RunResponse(error=str(exc))
        program = request.program or "."
        if info is not None and info.program_directory:
            program = os.path.join(info.program_directory, info.entry_point or ".")
        args = [python, "-u", str(self.exec_script)]
        args += ["--monitor", request.monitor_address, "--engine", self.engine_address]
        args += ["--project", request.project, "--stack", request.stack, "--pwd", request.pwd]
        args += ["--dry_run", "true" if request.dryRun else "false", "--parallel", str(request.parallel)]
        if request.organization:
            args += ["--organization", request.organization]
        if info is not None and info.root_directory:
            args += ["--root_directory", info.root_directory]
        args += [program, *request.args]
        env = _venv_env(
            python,
            {
                "PULUMI_CONFIG": json.dumps(dict(request.config)),
                "PULUMI_CONFIG_SECRET_KEYS": json.dumps(list(request.configSecretKeys)),
            },
        )
        # The program's output goes straight to ours, which the CLI shows as the program's output.
        code = subprocess.run(args, cwd=request.pwd or None, env=env).returncode
        if code == 0:
            return language_pb2.RunResponse()
        if code == _EXIT_AFTER_USER_MESSAGE:
            return language_pb2.RunResponse(bail=True)
        return language_pb2.RunResponse(error=f"Program exited with non-zero exit code: {code}")

    def RunPlugin(self, request, context):  # noqa: N802
        """Runs a Python plugin (a policy pack) and streams its output back as it comes."""
        info = request.info if request.HasField("info") else None
        program_dir = info.program_directory if info is not None and info.program_directory else request.program
        python = python_for(info, program_dir)
        extra = dict(item.split("=", 1) for item in request.env if "=" in item)
        proc = subprocess.Popen(
            [python, "-u", program_dir, *request.args],
            cwd=request.pwd or program_dir,
            env=_venv_env(python, extra),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        context.add_callback(proc.kill)
        chunks: list[language_pb2.RunPluginResponse] = []
        lock = threading.Condition()
        open_streams = [2]

        def pump(stream, field: str) -> None:
            for chunk in iter(lambda: stream.read1(65536), b""):
                with lock:
                    chunks.append(language_pb2.RunPluginResponse(**{field: chunk}))
                    lock.notify()
            with lock:
                open_streams[0] -= 1
                lock.notify()

        threading.Thread(target=pump, args=(proc.stdout, "stdout"), daemon=True).start()
        threading.Thread(target=pump, args=(proc.stderr, "stderr"), daemon=True).start()
        while True:
            with lock:
                while not chunks and open_streams[0] > 0:
                    lock.wait()
                pending, chunks[:] = list(chunks), []
                done = open_streams[0] == 0
            yield from pending
            if done:
                break
        yield language_pb2.RunPluginResponse(exitcode=proc.wait())

    def InstallDependencies(self, request, context):  # noqa: N802
        # The virtualenv is created and kept in sync by `make venv`; nothing to install here.
        return iter(())

    def Cancel(self, request, context):  # noqa: N802
        return empty_pb2.Empty()


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def _stop_when_orphaned(server: grpc.Server, every: float = 2.0) -> None:
    """Stop once the engine that started us is gone: an engine killed with SIGKILL (a lost CI
    runner, kill -9) never tells its plugins, and the host would otherwise wait forever. The
    parent changes when we are re-parented (checked, not PR_SET_PDEATHSIG: that fires when the
    engine's spawning thread exits, which a Go runtime may do while the engine lives)."""
    engine = os.getppid()

    def watch() -> None:
        while os.getppid() == engine:
            threading.Event().wait(every)
        server.stop(0)
        # The program it runs may wait forever on the dead engine's monitor: end it, then us.
        for child in _children(os.getpid()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGTERM)
        threading.Event().wait(5)
        os._exit(0)

    threading.Thread(target=watch, name="orphan-watch", daemon=True).start()


def main(argv: list[str]) -> int:
    if "--version" in argv:
        print(VERSION)
        return 0
    positional = [a for a in argv if not a.startswith("-")]
    engine = positional[-1] if positional else ""
    exec_script = EXEC_SCRIPT or Path(os.environ.get("SMARTNATION_LANGUAGE_DIR", "")) / "pulumi-language-python-exec"
    if not exec_script.is_file():
        print(f"pulumi-language-python: {exec_script} is missing: run `make bootstrap`", file=sys.stderr)
        return 1
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), options=_GRPC_OPTIONS)
    language_pb2_grpc.add_LanguageRuntimeServicer_to_server(LanguageHost(engine, exec_script), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    # The CLI reads the port from the first line we print.
    sys.stdout.write(f"{port}\n")
    sys.stdout.flush()
    signal.signal(signal.SIGTERM, lambda *_: server.stop(0))
    _stop_when_orphaned(server)
    try:
        server.wait_for_termination()
    except KeyboardInterrupt:
        # The CLI interrupts its plugins when it is done with them: a normal end, not an error.
        server.stop(0)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
