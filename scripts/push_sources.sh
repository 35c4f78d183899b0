#!/usr/bin/env bash
# Push the model, ETL and test code to their branches of the pipeline's CodeCommit repository.
#
# Each branch gets a commit whose tree holds only that source's paths, at the same places as in
# this repository (the Dockerfiles, buildspecs and tests use repository-root paths, so
# `git subtree split`, which takes one folder and re-roots it, does not fit). The commits are
# built with git plumbing from this working tree (tracked and untracked files, minus .gitignore)
# in a temporary index: the checkout, index and branches here are not touched. A branch whose
# tree would not change is not pushed, so it starts no pipeline execution.
# Executions (SourceChangeRule in templates/pipeline.yaml): the push that creates a branch starts none, so a
# first deployment's pushes wait for the data upload, which starts the one execution that has every source;
# each later push that updates a branch starts one.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/_common.sh
source "$ROOT/scripts/_common.sh"

MODEL_PATHS=(setup.cfg pyproject.toml data src/training tests/__init__.py tests/conftest.py tests/training
             buildspecs/training-image.yml templates/endpoint.yaml)
ETL_PATHS=(setup.cfg pyproject.toml data src/glue_jobs tests/__init__.py tests/conftest.py tests/glue_jobs)
TEST_PATHS=(setup.cfg pyproject.toml src/lambdas tests/__init__.py tests/conftest.py tests/events tests/lambdas
            buildspecs/test-image.yml templates/test-lambda.yaml)

usage() {
    cat <<USAGE
usage: ${0##*/} [--stack-name NAME] [--remote URL] [--only model|etl|test] [--dry-run]

Pushes the model, ETL and test code to the branches the pipeline stack watches.

  --stack-name NAME   pipeline stack (default: mlops-pipeline); gives the clone URL and branch names
  --remote URL        push here instead of the stack's repository (branch names stay the defaults
                      model, etl, test unless the stack is reachable)
  --only SOURCE       push one source: model, etl or test
  --dry-run           build the commits and print what would be pushed
  -h, --help          this message

Pipeline executions: a push that creates a branch starts none; a push that updates one starts one
per branch pushed. On a first deployment (deploy.sh --help) the branches are new, so this starts
nothing: run scripts/upload_data.sh next, and its data upload starts the one execution with every
source. Later, each branch this pushes starts an execution; they run one after another (QUEUED),
and the last one has every change.
USAGE
}

STACK_NAME="mlops-pipeline"
REMOTE=""
ONLY=""
DRY_RUN=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --stack-name) need_value "$1" "$#"; STACK_NAME="$2"; shift 2 ;;
        --remote) need_value "$1" "$#"; REMOTE="$2"; shift 2 ;;
        --only)
            need_value "$1" "$#"
            [[ "$2" =~ ^(model|etl|test)$ ]] || usage_error "--only takes model, etl or test, got: $2"
            ONLY="$2"; shift 2 ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage_error "unexpected argument: $1" ;;
    esac
done

command -v git >/dev/null 2>&1 || die "git is not on PATH"
git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1 || die "$ROOT is not a git repository"

MODEL_BRANCH=model ETL_BRANCH=etl TEST_BRANCH=test
GIT_PUSH=(git -C "$ROOT")
if [[ -z "$REMOTE" ]]; then
    require_aws
    require_stack "$STACK_NAME"
    REMOTE="$(stack_output "$STACK_NAME" RepositoryCloneUrlHttp)"
    MODEL_BRANCH="$(stack_output "$STACK_NAME" ModelBranch)"
    ETL_BRANCH="$(stack_output "$STACK_NAME" EtlBranch)"
    TEST_BRANCH="$(stack_output "$STACK_NAME" TestBranch)"
    # CodeCommit over HTTPS with the caller's AWS credentials (no Git credentials needed).
    GIT_PUSH+=(-c credential.helper= -c "credential.helper=!aws codecommit credential-helper \$@"
               -c credential.UseHttpPath=true)
fi

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

# build_commit BRANCH PATH...: prints the commit to push, or nothing when the branch is current.
build_commit() {
    local branch="$1" index="$TMP/index-$1" tree parent="" parent_tree="" head message
    shift
    local present=()
    for path in "$@"; do
        [[ -e "$ROOT/$path" ]] && present+=("$path")
    done
    GIT_INDEX_FILE="$index" git -C "$ROOT" add --all -- "${present[@]}"
    tree="$(GIT_INDEX_FILE="$index" git -C "$ROOT" write-tree)"
    if "${GIT_PUSH[@]}" fetch --quiet "$REMOTE" "refs/heads/${branch}" 2>/dev/null; then
        parent="$(git -C "$ROOT" rev-parse FETCH_HEAD)"
        parent_tree="$(git -C "$ROOT" rev-parse "${parent}^{tree}")"
    fi
    if [[ "$tree" == "$parent_tree" ]]; then
        info "branch ${branch} is up to date; not pushed"
        return
    fi
    head="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo none)"
    message="${branch} sources from ${head}"
    if [[ -n "$(git -C "$ROOT" status --porcelain -- "${present[@]}")" ]]; then
        message+=" (with uncommitted changes)"
    fi
    if [[ -n "$parent" ]]; then
        git -C "$ROOT" commit-tree "$tree" -p "$parent" -m "$message"
    else
        git -C "$ROOT" commit-tree "$tree" -m "$message"
    fi
}

push_source() {
    local name="$1" branch="$2" commit
    shift 2
    [[ -z "$ONLY" || "$ONLY" == "$name" ]] || return 0
    commit="$(build_commit "$branch" "$@")"
    [[ -n "$commit" ]] || return 0
    if [[ "$DRY_RUN" == 1 ]]; then
        info "would push ${commit} to ${branch}:"
        git -C "$ROOT" ls-tree --name-only "$commit" >&2
        return 0
    fi
    info "pushing ${name} code (${commit}) to ${REMOTE} ${branch}"
    "${GIT_PUSH[@]}" push --quiet "$REMOTE" "${commit}:refs/heads/${branch}"
}

push_source model "$MODEL_BRANCH" "${MODEL_PATHS[@]}"
push_source etl "$ETL_BRANCH" "${ETL_PATHS[@]}"
push_source test "$TEST_BRANCH" "${TEST_PATHS[@]}"
