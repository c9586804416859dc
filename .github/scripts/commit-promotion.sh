#!/usr/bin/env bash
# Commits what `smartnation promote SOURCE TARGET` wrote and pushes it to main, authored by the
# GitHub user who started the run:
#
#     .github/scripts/commit-promotion.sh TARGET
#
# Exactly two paths go into the commit: environments/TARGET.yaml (the copied releases) and
# environments/audit/promotions.jsonl (the audit line, written for refusals too). Nothing else the
# job may have touched is committed. If main moved meanwhile, the commit is rebased onto it and
# pushed again; if that cannot be done, the step fails and leaves the commit as a patch in the
# run's summary, so a promotion is never lost with the runner.
#
# Needs GITHUB_TOKEN (contents: write, for this step only), and the runner's GITHUB_ACTOR,
# GITHUB_ACTOR_ID, GITHUB_SERVER_URL and GITHUB_REPOSITORY, which a workflow cannot override.
set -euo pipefail

target="${1:?usage: commit-promotion.sh TARGET}"
: "${GITHUB_TOKEN:?GITHUB_TOKEN is not in the env of the step}"
: "${GITHUB_ACTOR:?}" "${GITHUB_ACTOR_ID:?}" "${GITHUB_SERVER_URL:?}" "${GITHUB_REPOSITORY:?}"
branch=main
files=("environments/${target}.yaml" "environments/audit/promotions.jsonl")

export GIT_AUTHOR_NAME="$GITHUB_ACTOR"
export GIT_AUTHOR_EMAIL="${GITHUB_ACTOR_ID}+${GITHUB_ACTOR}@users.noreply.github.com"
export GIT_COMMITTER_NAME="github-actions[bot]"
export GIT_COMMITTER_EMAIL="41898282+github-actions[bot]@users.noreply.github.com"

for file in "${files[@]}"; do
    if [ -e "$file" ]; then
        git add -- "$file"
    fi
done
if git diff --cached --quiet; then
    echo "commit-promotion: the promotion wrote nothing (no environment file change, no audit line)"
    exit 0
fi
git commit --quiet -m "Promote to ${target} (by ${GITHUB_ACTOR})" \
    -m "Releases and audit line written by \`smartnation promote\` in ${PROMOTE_RUN_URL:-the promote workflow}."

# The token travels in a header of these commands only, never in .git/config.
remote="${GITHUB_SERVER_URL}/${GITHUB_REPOSITORY}.git"
auth="$(printf 'x-access-token:%s' "$GITHUB_TOKEN" | base64 | tr -d '\n')"
remote_git() {
    git -c "http.extraheader=AUTHORIZATION: basic ${auth}" "$@"
}

keep_as_patch() {
    git rebase --abort 2>/dev/null || true
    {
        echo "### The promotion could not be pushed to ${branch}: apply this patch by hand"
        echo '```diff'
        git format-patch -1 --stdout HEAD
        echo '```'
    } >> "${GITHUB_STEP_SUMMARY:-/dev/stderr}"
    echo "commit-promotion: could not push to ${branch}; the commit is in the run's summary" >&2
    exit 1
}

for attempt in 1 2 3; do
    if remote_git push --quiet "$remote" "HEAD:refs/heads/${branch}"; then
        echo "commit-promotion: pushed $(git rev-parse --short HEAD) to ${branch}"
        exit 0
    fi
    echo "commit-promotion: ${branch} moved (attempt ${attempt}); rebasing onto it"
    remote_git fetch --quiet "$remote" "$branch" || keep_as_patch
    # --autostash: anything else the job changed stays out of the commit, as it was.
    git rebase --quiet --autostash FETCH_HEAD || keep_as_patch
done
keep_as_patch
