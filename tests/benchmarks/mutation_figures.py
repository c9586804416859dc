"""The mutation-testing figures in BENCHMARKS.md: read from tests/benchmarks/mutation.json.

`make mutation` (tests/tools/mutation.py) appends one entry per scope and run to that file; `make
bench` renders them, so its rewrite of BENCHMARKS.md keeps them.
"""

from __future__ import annotations

import json
from pathlib import Path

MUTATION_RESULTS = Path(__file__).with_name("mutation.json")
GOALS = {"settings": 10, "policy": 10, "promotion": 20, "components": 20, "move": 10}
"""Most surviving mutants allowed per scope, in % (issue 12)."""


def read_mutation() -> dict | None:
    return json.loads(MUTATION_RESULTS.read_text()) if MUTATION_RESULTS.exists() else None


def render_mutation(m: dict | None) -> list[str]:
    if not m or not m.get("runs"):
        return ["## Mutation testing", "", "Not run yet: `make mutation`.", ""]
    lines = [
        "## Mutation testing (`make mutation`)",
        "",
        f"`{m['command']}`: mutmut mutates each scope's code in a scratch tree under the cache and runs the unit "
        "test modules about that scope against every mutant (tests/tools/mutation.py). Surviving % counts the "
        "mutants that survived or that no selected test reached, of those checked; a run stopped at its time "
        "budget checked the fastest mutants first. Not part of `make test`: too slow for CI's budget.",
        "",
        "| date | scope | run | mutants | checked | killed | survived | no tests | timeouts | surviving % "
        "| goal | duration |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in m["runs"]:
        lines.append(
            f"| {r['date']} | {r['scope']} | {r.get('label') or '-'} | {r['mutants']} | {r['checked']} | "
            f"{r['killed']} | {r['survived']} | {r['no_tests']} | {r['timeouts']} | {r['surviving_percent']} | "
            f"< {GOALS.get(r['scope'], '?')} | {r['duration_s'] / 60:.0f} min |"
        )
    lines.append("")
    for r in m["runs"]:
        left_out = r.get("left_out_failing_before") or []
        details = f"- {r['date']}, {r['scope']}: `{r['code']}` against `{r['tests']}`; {r['run']}."
        if left_out:
            details += f" Left out, failing before any mutation: {', '.join(f'`{t}`' for t in left_out)}."
        lines.append(details)
    for note in m.get("notes", []):
        lines += ["", f"> {note}"]
    lines.append("")
    return lines
