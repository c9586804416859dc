# shellcheck shell=bash
# Sourced (`. .github/scripts/state-env.sh`) by every workflow step that talks to the Pulumi state.
#
# The state backend URL, the secrets passphrase and the MinIO keys arrive ONLY as environment
# variables mapped from the job's GitHub-environment secrets (dev, staging, production: each has
# its own passphrase; none is a repository secret) in the step's `env:`; nothing here reads them
# from a file. Pull-request previews source preview-env.sh instead: they get none of these. An unset secret fails the step here: the toolchain would otherwise fall back
# to a local file backend and deploy as if the stack were new.

: "${PULUMI_BACKEND_URL:?the PULUMI_BACKEND_URL secret is not set}"
: "${PULUMI_CONFIG_PASSPHRASE:?the PULUMI_CONFIG_PASSPHRASE secret is not set}"
unset PULUMI_CONFIG_PASSPHRASE_FILE

case "$PULUMI_BACKEND_URL" in
    s3://*)
        # Monaco's own MinIO, addressed through Pulumi's S3-compatible backend.
        : "${AWS_ACCESS_KEY_ID:?the AWS_ACCESS_KEY_ID secret (MinIO access key) is not set}"
        : "${AWS_SECRET_ACCESS_KEY:?the AWS_SECRET_ACCESS_KEY secret (MinIO secret key) is not set}"
        ;;
esac

# Cluster credentials: an environment secret per GitHub environment (dev and staging reach
# dusseldorf-test, production reaches monaco-onprem), written where only this job can read it.
if [ -n "${CLUSTER_KUBECONFIG:-}" ]; then
    (umask 077 && printf '%s\n' "$CLUSTER_KUBECONFIG" > "$RUNNER_TEMP/kubeconfig")
    export SMARTNATION_KUBECONFIG="$RUNNER_TEMP/kubeconfig"
fi
unset CLUSTER_KUBECONFIG

# The toolchain's PATH and plugin settings, exactly as `make up` gets them. Values already set
# above (backend URL, passphrase, kubeconfig) win over its local defaults. An assignment, not
# `eval "$(...)"`, so that a refusal (exit status non-zero) stops the step under bash -e.
toolchain_env="$("$GITHUB_WORKSPACE/.venv/bin/python" -m smartnation.tooling.toolchain.env)"
eval "$toolchain_env"
