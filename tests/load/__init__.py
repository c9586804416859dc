"""The bounded load generator against a deployed environment (issue 9): `python -m tests.load ENV`;
`tests/benchmarks/run.py --only-load` records its figures in BENCHMARKS.md."""
