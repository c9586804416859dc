"""Exit codes of the ops CLI: distinct, so a pipeline or an on-call script can branch on them."""

OK = 0
FAILED = 1  # the engine or a gate failed; the message says which
BAD_INPUT = 2  # unknown environment, malformed file, missing secret, backwards promotion
POLICY_VIOLATION = 3  # a mandatory policy failed in a preview or update
STACK_LOCKED = 4  # another update holds the stack's lock
STACK_NOT_FOUND = 5  # the environment has never been deployed to this backend
ABORTED = 6  # the operator declined the confirmation
INTERRUPTED = 7  # an earlier update was killed mid-way (stale lock, pending operations): `up --recover`
UNREADABLE = 8  # a status could not read what it needs live (kubeconfig context, namespace, Pod): `move --status`
TIMED_OUT = 9  # `move ENV --to CLUSTER` waited --timeout seconds and the target did not catch up (lag 0): re-run
