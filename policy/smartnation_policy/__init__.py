"""Policy rules and target configuration of the `smartnation-guardrails` policy pack."""
