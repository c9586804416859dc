"""``python -m service_testing.benchmark``: issue 9's load figures against the host daemons.

Starts the platform's daemons on loopback (service_testing.daemons), telemetry-ingest as its
container would run, and the bounded load generator; prints one JSON report. Not a test: the
figures go into BENCHMARKS.md by hand, with the machine they were taken on.
"""

from __future__ import annotations

import argparse
import json
import os
import platform as host
import sys
import tempfile
import time
from pathlib import Path

import httpx

from service_testing import daemons
from service_testing.loadgen import LoadPlan, run_load


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--rate", type=float, default=2000, help="readings per second, all devices together")
    parser.add_argument("--duration", type=float, default=30, help="seconds of publishing")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--brokers", type=int, default=3, help="independent broker processes (broker pods)")
    parser.add_argument("--ingest-replicas", type=int, default=1)
    args = parser.parse_args(argv)

    def say(message: str) -> None:
        print(f"[benchmark] {message}", file=sys.stderr, flush=True)

    with daemons.platform(brokers=args.brokers) as running, tempfile.TemporaryDirectory() as workdir:
        env = running.env("telemetry-ingest")
        ingests = [daemons.start_service("telemetry_ingest", env, Path(workdir)) for _ in range(args.ingest_replicas)]
        try:
            for service in ingests:
                deadline = time.monotonic() + 30
                while httpx.get(f"{service.url}/readyz").status_code != 200:
                    if time.monotonic() > deadline:
                        raise SystemExit(f"ingest not ready:\n{service.logs()[-3000:]}")
                    time.sleep(0.2)
            say(f"{args.brokers} brokers, {args.ingest_replicas} ingest replica(s) ready")
            user, password = running.device_credentials("parking-sensor")
            plan = LoadPlan(
                broker_ports=running.brokers.ports, username=user, password=password, devices=args.devices,
                rate_per_s=args.rate, duration_s=args.duration, connections=args.connections,
            )  # fmt: skip
            db = {"host": "127.0.0.1", "port": running.postgres.port, "dbname": "telemetry", "user": "open_data",
                  "password": running.postgres.passwords["open_data"]}  # fmt: skip
            report = run_load(plan, db, progress=say)
            stats = [httpx.get(f"{s.url}/v1/stats").json() for s in ingests]
        finally:
            for service in ingests:
                service.terminate()
    print(
        json.dumps(
            {
                "machine": {"cpus": os.cpu_count(), "python": host.python_version(), "kernel": host.release()},
                "plan": {
                    "devices": args.devices,
                    "rate_per_s": args.rate,
                    "duration_s": args.duration,
                    "connections": args.connections,
                    "brokers": args.brokers,
                    "ingest_replicas": args.ingest_replicas,
                },  # fmt: skip
                "report": report.as_dict(),
                "ingest": [
                    {k: s[k] for k in ("received", "stored", "duplicates", "batches", "write_failures")} for s in stats
                ],  # fmt: skip
            },
            indent=2,
        )
    )
    return 0 if report.missing == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
