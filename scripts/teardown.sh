#!/usr/bin/env bash
# Delete everything deploy.sh and the pipeline created: the endpoint and endpoint-test stacks the
# pipeline deployed, the registered model packages, the buckets' contents (every version), the
# pipeline stack, and the code bucket. Asks first unless --yes.
# The stack retains the CodeCommit repository (code outlives it) and the project KMS key the repository
# is encrypted with. --delete-repository deletes the repository; the key is then no longer needed, and
# its deletion is scheduled (KMS waits 30 days, cancellable). While the repository stays, so does the key.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/_common.sh
source "$ROOT/scripts/_common.sh"

usage() {
    cat <<USAGE
usage: ${0##*/} [--stack-name NAME] [--yes] [--keep-code-bucket] [--delete-repository]

Deletes the pipeline stack and everything it created.

  --stack-name NAME     pipeline stack (default: mlops-pipeline)
  --yes                 do not ask for confirmation
  --keep-code-bucket    keep the bucket deploy.sh uploads the Lambda zip to
  --delete-repository   also delete the CodeCommit repository (the stack retains it) and schedule
                        the deletion of the project KMS key it is encrypted with (retained too)
  -h, --help            this message
USAGE
}

STACK_NAME="mlops-pipeline"
YES=0
KEEP_CODE_BUCKET=0
DELETE_REPOSITORY=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --stack-name) need_value "$1" "$#"; STACK_NAME="$2"; shift 2 ;;
        --yes) YES=1; shift ;;
        --keep-code-bucket) KEEP_CODE_BUCKET=1; shift ;;
        --delete-repository) DELETE_REPOSITORY=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage_error "unexpected argument: $1" ;;
    esac
done

require_aws
require_stack "$STACK_NAME"
PROJECT_NAME="$(stack_parameter "$STACK_NAME" ProjectName)"
CODE_BUCKET="$(stack_parameter "$STACK_NAME" LambdaCodeBucket)"
CREATED_REPOSITORY="$(stack_parameter "$STACK_NAME" CreateRepository)"
REPOSITORY="$(stack_output "$STACK_NAME" RepositoryName)"
BUCKETS=("$(stack_output "$STACK_NAME" ArtifactBucketName)" "$(stack_output "$STACK_NAME" DataBucketName)")
GROUP="$(stack_output "$STACK_NAME" ModelPackageGroupName)"
KEY_ARN="$(stack_output "$STACK_NAME" ProjectKeyArn)"
# The key outlives the stack (DeletionPolicy Retain) because the retained repository is encrypted with it;
# once nothing retained uses it (repository deleted, or not created by the stack), its deletion is scheduled.
KEY_PENDING_DAYS=30
if [[ "$DELETE_REPOSITORY" == 1 || "$CREATED_REPOSITORY" != "true" ]]; then
    KEY_FATE="deletion scheduled (${KEY_PENDING_DAYS}-day waiting period, cancellable)"
    DELETE_KEY=1
else
    KEY_FATE="kept (the retained repository ${REPOSITORY} is encrypted with it)"
    DELETE_KEY=0
fi
mapfile -t CHILD_STACKS < <(aws cloudformation list-stacks \
    --query "StackSummaries[?StackStatus!='DELETE_COMPLETE' && starts_with(StackName, '${PROJECT_NAME}-endpoint-')].StackName" \
    --output text | tr '\t' '\n' | sed '/^$/d; /^None$/d')

cat >&2 <<PLAN
This deletes, in ${AWS_REGION} (account ${ACCOUNT_ID}):
  stacks the pipeline deployed: ${CHILD_STACKS[*]:-none}
  every model package in ${GROUP}
  every object version in: ${BUCKETS[*]}
  stack ${STACK_NAME}
  code bucket: $([[ "$KEEP_CODE_BUCKET" == 1 ]] && echo kept || echo "$CODE_BUCKET")
  CodeCommit repository ${REPOSITORY}: $([[ "$DELETE_REPOSITORY" == 1 ]] && echo deleted || echo kept)
  KMS key ${KEY_ARN}: ${KEY_FATE}
PLAN
if [[ "$YES" != 1 ]]; then
    [[ -t 0 ]] || die "not a terminal, so cannot ask; pass --yes to delete without asking"
    read -r -p "Type the stack name (${STACK_NAME}) to delete it all: " answer
    [[ "$answer" == "$STACK_NAME" ]] || die "not confirmed; nothing deleted"
fi

# empty_bucket BUCKET: delete every object version and delete marker, a page (<= 1000) at a time.
empty_bucket() {
    local bucket="$1" page="$TMP/page.json"
    aws s3api head-bucket --bucket "$bucket" >/dev/null 2>&1 || return 0
    info "emptying s3://${bucket} (all versions)"
    while true; do
        # shellcheck disable=SC2016  # backticks are JMESPath literals, not shell expansions
        aws s3api list-object-versions --bucket "$bucket" --max-items 1000 --output json \
            --query '{Objects: [Versions || `[]`, DeleteMarkers || `[]`][][].{Key: Key, VersionId: VersionId}, Quiet: `true`}' \
            > "$page"
        grep -q '"Key"' "$page" || break
        aws s3api delete-objects --bucket "$bucket" --delete "file://${page}" >/dev/null
    done
}

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

# 1. Stacks the pipeline deployed: they use roles of the pipeline stack, so they go first.
for stack in "${CHILD_STACKS[@]+"${CHILD_STACKS[@]}"}"; do
    info "deleting stack ${stack}"
    aws cloudformation delete-stack --stack-name "$stack"
    aws cloudformation wait stack-delete-complete --stack-name "$stack"
done

# 2. The model package group can only be deleted empty.
if [[ -n "$GROUP" && "$GROUP" != None ]]; then
    mapfile -t PACKAGES < <(aws sagemaker list-model-packages --model-package-group-name "$GROUP" \
        --query 'ModelPackageSummaryList[].ModelPackageArn' --output text 2>/dev/null | tr '\t' '\n' | sed '/^$/d; /^None$/d')
    for package in "${PACKAGES[@]+"${PACKAGES[@]}"}"; do
        info "deleting model package ${package}"
        aws sagemaker delete-model-package --model-package-name "$package"
    done
fi

# 3. Versioned buckets can only be deleted empty.
for bucket in "${BUCKETS[@]}"; do
    [[ -n "$bucket" && "$bucket" != None ]] && empty_bucket "$bucket"
done

# 4. The pipeline stack (ECR repositories are emptied on delete).
info "deleting stack ${STACK_NAME}"
aws cloudformation delete-stack --stack-name "$STACK_NAME"
aws cloudformation wait stack-delete-complete --stack-name "$STACK_NAME"

# 5. What lives outside the stack.
if [[ "$KEEP_CODE_BUCKET" != 1 && -n "$CODE_BUCKET" && "$CODE_BUCKET" != None ]]; then
    empty_bucket "$CODE_BUCKET"
    aws s3api delete-bucket --bucket "$CODE_BUCKET" 2>/dev/null && info "deleted code bucket ${CODE_BUCKET}" || true
fi
if [[ "$DELETE_REPOSITORY" == 1 ]]; then
    info "deleting CodeCommit repository ${REPOSITORY}"
    aws codecommit delete-repository --repository-name "$REPOSITORY" >/dev/null
elif [[ "$CREATED_REPOSITORY" == "true" ]]; then
    info "kept CodeCommit repository ${REPOSITORY}; delete it with: aws codecommit delete-repository --repository-name ${REPOSITORY}"
fi
if [[ -n "$KEY_ARN" && "$KEY_ARN" != None ]]; then
    if [[ "$DELETE_KEY" == 1 ]]; then
        info "scheduling deletion of KMS key ${KEY_ARN} in ${KEY_PENDING_DAYS} days; undo with: aws kms cancel-key-deletion --key-id ${KEY_ARN}"
        aws kms schedule-key-deletion --key-id "$KEY_ARN" --pending-window-in-days "$KEY_PENDING_DAYS" >/dev/null
    else
        info "kept KMS key ${KEY_ARN}: repository ${REPOSITORY} is encrypted with it. After deleting the repository:" \
            "aws kms schedule-key-deletion --key-id ${KEY_ARN} --pending-window-in-days ${KEY_PENDING_DAYS}"
        info "a new deployment that reuses the repository (CreateRepository=false) creates a new key; move the" \
            "repository to it (aws codecommit update-repository-encryption-key --repository-name ${REPOSITORY}" \
            "--kms-key-id <ProjectKeyArn of the new stack>), then schedule this key's deletion"
    fi
fi
info "done"
