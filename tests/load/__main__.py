"""``python -m tests.load ENV [--devices N] [--rate R] [--duration S] [--threads T]``: one
bounded load run against a deployed environment; prints its report as JSON (exit 1 when a
reading the broker acknowledged was not stored)."""

from __future__ import annotations

import argparse
import json
import sys

from tests.load.deployed import open_environment
from tests.load.plan import LoadPlan, PlanError
from tests.load.run import LoadReport, run_load


def measure(environment: str, devices: int, rate: float, duration: float, threads: int) -> LoadReport:
    plan = LoadPlan(environment, devices=devices, rate_per_s=rate, duration_s=duration, threads=threads)
    plan.check()  # before anything is opened

    def say(message: str) -> None:
        print(f"[load {environment}] {message}", file=sys.stderr, flush=True)

    env = open_environment(environment)
    pods = {p["metadata"]["uid"]: p["metadata"]["name"] for p in env.kubectl.items("pods")}
    say(f"{plan.devices} devices, {plan.rate_per_s:g} readings/s for {plan.duration_s:g}s, run {plan.run_id}")
    return run_load(env, plan, cpu_pods=pods, progress=say)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.load", description=__doc__.splitlines()[0])
    parser.add_argument("environment")
    parser.add_argument("--devices", type=int, default=50, help="simulated devices, one connection each")
    parser.add_argument("--rate", type=float, default=2000, help="readings per second, all devices together")
    parser.add_argument("--duration", type=float, default=30, help="seconds of publishing")
    parser.add_argument("--threads", type=int, default=4, help="publishing threads")
    args = parser.parse_args(argv)
    try:
        report = measure(args.environment, args.devices, args.rate, args.duration, args.threads)
    except PlanError as error:
        parser.error(str(error))
    print(json.dumps(report.as_dict(), indent=2))
    return 0 if report.missing == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
