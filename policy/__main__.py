"""Entry point the Pulumi engine runs: the `smartnation-guardrails` policy pack."""

from pulumi_policy import EnforcementLevel, PolicyPack

from smartnation_policy.rules import POLICIES

PolicyPack(
    name="smartnation-guardrails",
    # Each policy sets its own level; a policy added without one blocks until someone decides.
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=POLICIES,
)
