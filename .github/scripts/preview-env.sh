# shellcheck shell=bash
# Sourced (`. .github/scripts/preview-env.sh`) by the pull-request preview, which runs the
# branch's own code: it gets a read-only identity and nothing that decrypts or writes.
#
# - SMARTNATION_DEPLOYED_STATE_URL + AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY: the deployed state,
#   through a MinIO user whose policy only reads the state bucket. Read without a passphrase:
#   the engine keeps the state's secrets as ciphertext and never decrypts them.
# - CLUSTER_KUBECONFIG: a ServiceAccount bound to the `view` ClusterRole.
# - The engine's own scratch state: a file backend in this job's temporary directory, under a
#   passphrase made up for this run. It holds placeholders only and dies with the runner.

: "${SMARTNATION_DEPLOYED_STATE_URL:?the PREVIEW_STATE_URL secret of the preview environment is not set}"
: "${AWS_ACCESS_KEY_ID:?the PREVIEW_STATE_ACCESS_KEY_ID secret of the preview environment is not set}"
: "${AWS_SECRET_ACCESS_KEY:?the PREVIEW_STATE_SECRET_ACCESS_KEY secret of the preview environment is not set}"
: "${CLUSTER_KUBECONFIG:?the PREVIEW_KUBECONFIG secret of the preview environment is not set}"

# Whatever a misconfigured repository hands down, nothing that decrypts an environment's secrets
# stays in reach of the branch's code.
unset PULUMI_CONFIG_PASSPHRASE_FILE
for name in $(compgen -e); do
    case "$name" in
        SMARTNATION_SECRETS_* | SMARTNATION_PASSPHRASE_*) unset "$name" ;;
    esac
done

(umask 077 && printf '%s\n' "$CLUSTER_KUBECONFIG" > "$RUNNER_TEMP/kubeconfig")
export SMARTNATION_KUBECONFIG="$RUNNER_TEMP/kubeconfig"
unset CLUSTER_KUBECONFIG

scratch_passphrase="$(head -c 32 /dev/urandom | base64)"
export PULUMI_CONFIG_PASSPHRASE="$scratch_passphrase"
export PULUMI_BACKEND_URL="file://$RUNNER_TEMP/scratch-state"
mkdir -p "$RUNNER_TEMP/scratch-state"

# The toolchain's PATH and plugin settings. An assignment, not `eval "$(...)"`, so that a refusal
# (exit status non-zero) stops the step under bash -e instead of evaluating nothing.
toolchain_env="$("$GITHUB_WORKSPACE/.venv/bin/python" -m smartnation.tooling.toolchain.env)"
eval "$toolchain_env"
