#!/usr/bin/env bash
# Deploy (create or update) the pipeline stack, templates/pipeline.yaml.
#
# 1. zips the job-worker Lambdas as a `lambdas/` package (the handlers import `lambdas.*`; boto3
#    comes from the Lambda runtime) and uploads it, named by its content hash, to a code bucket
#    (created on first use: <project>-deploy-<account>-<region>, private, encrypted, versioned);
# 2. `aws cloudformation deploy`s the stack with CAPABILITY_NAMED_IAM;
# 3. seeds the Glue job's script and the shared `training` package zip under the stack's
#    GlueCodeUri when they are not there yet (afterwards every Build stage refreshes them);
# 4. abandons the execution CodePipeline starts by itself when it creates the pipeline (see usage);
# 5. prints the stack outputs.
# Works against any endpoint the aws CLI reaches, e.g. AWS_ENDPOINT_URL=http://127.0.0.1:5000.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/_common.sh
source "$ROOT/scripts/_common.sh"

usage() {
    cat <<USAGE
usage: ${0##*/} [--project-name NAME] [--stack-name NAME] [--code-bucket BUCKET]
                [--refresh-glue-code] [--] [Key=Value ...]

Deploys templates/pipeline.yaml. Key=Value pairs are extra stack parameters
(e.g. QualityThreshold=550 ProdCanaryWaitSeconds=300 CreateRepository=false RepositoryName=existing).

  --project-name NAME   ProjectName parameter, the prefix of every resource (default: mlops)
  --stack-name NAME     stack name (default: <project-name>-pipeline)
  --code-bucket BUCKET  bucket for the Lambda zip and the packaged template
                        (default: <project-name>-deploy-<account>-<region>, created if missing)
  --refresh-glue-code   overwrite the Glue script and training.zip with this working tree's
  -h, --help            this message

First deployment: one execution, with every source.
  1. deploy.sh         creates the stack. CodePipeline starts an execution when it creates the
                       pipeline, before the branches and the data exist; this script abandons it.
  2. push_sources.sh   creates the model, ETL and test branches. Creating a branch starts nothing
                       (the source rule matches branch updates only). In a repository whose
                       branches exist (CreateRepository=false), a changed branch starts one, which
                       fails at its Source stage: the new stack's data bucket has no data yet.
  3. upload_data.sh    uploads the data set; the new data object starts the one execution.
Afterwards each push that changes a branch, and each data upload, starts one execution (QUEUED:
they run one after another). To run again without a change:
  aws codepipeline start-pipeline-execution --name <PipelineName output>
USAGE
}

PROJECT_NAME="mlops"
STACK_NAME=""
CODE_BUCKET=""
REFRESH_GLUE=0
OVERRIDES=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --project-name) need_value "$1" "$#"; PROJECT_NAME="$2"; shift 2 ;;
        --stack-name) need_value "$1" "$#"; STACK_NAME="$2"; shift 2 ;;
        --code-bucket) need_value "$1" "$#"; CODE_BUCKET="$2"; shift 2 ;;
        --refresh-glue-code) REFRESH_GLUE=1; shift ;;
        -h|--help) usage; exit 0 ;;
        --) shift; OVERRIDES+=("$@"); break ;;
        -*) usage_error "unknown option: $1" ;;
        *=*) OVERRIDES+=("$1"); shift ;;
        *) usage_error "unexpected argument: $1 (stack parameters are Key=Value)" ;;
    esac
done
[[ "$PROJECT_NAME" =~ ^[a-z][a-z0-9-]{0,15}[a-z0-9]$ ]] \
    || usage_error "--project-name must be 2-17 lowercase letters, digits and hyphens, starting with a letter"
for pair in "${OVERRIDES[@]+"${OVERRIDES[@]}"}"; do
    [[ "$pair" =~ ^[A-Za-z0-9]+=.*$ ]] || usage_error "stack parameters are Key=Value, got: $pair"
    case "${pair%%=*}" in
        ProjectName|LambdaCodeBucket|LambdaCodeKey) usage_error "${pair%%=*} is set by this script" ;;
    esac
done
STACK_NAME="${STACK_NAME:-${PROJECT_NAME}-pipeline}"

require_aws
command -v python3 >/dev/null 2>&1 || die "python3 is not on PATH; it builds the deployment zips"
CODE_BUCKET="${CODE_BUCKET:-${PROJECT_NAME}-deploy-${ACCOUNT_ID}-${AWS_REGION}}"
BUILD="$ROOT/build/deploy"
mkdir -p "$BUILD"

# zip_package SRC_PARENT PACKAGE OUT: a reproducible zip (fixed timestamps, sorted, no caches)
# of SRC_PARENT/PACKAGE with PACKAGE/ at the root of the archive.
zip_package() {
    python3 - "$1" "$2" "$3" <<'PY'
import sys, zipfile
from pathlib import Path

parent, package, out = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
skip = {"__pycache__", "bin"}
files = sorted(p for p in (parent / package).rglob("*.py")
               if p.is_file() and not skip.intersection(p.relative_to(parent).parts[1:-1]))
with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
    for path in files:
        info = zipfile.ZipInfo(path.relative_to(parent).as_posix(), date_time=(1980, 1, 1, 0, 0, 0))
        info.external_attr = 0o644 << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        archive.writestr(info, path.read_bytes())
print(f"{out}: {len(files)} files")
PY
}

ensure_code_bucket() {
    if aws s3api head-bucket --bucket "$CODE_BUCKET" >/dev/null 2>&1; then
        return
    fi
    info "creating code bucket s3://${CODE_BUCKET}"
    if [[ "$AWS_REGION" == "us-east-1" ]]; then
        aws s3api create-bucket --bucket "$CODE_BUCKET" >/dev/null
    else
        aws s3api create-bucket --bucket "$CODE_BUCKET" \
            --create-bucket-configuration "LocationConstraint=${AWS_REGION}" >/dev/null
    fi
    aws s3api put-public-access-block --bucket "$CODE_BUCKET" --public-access-block-configuration \
        BlockPublicAcls=true,IgnorePublicAcls=true,BlockPublicPolicy=true,RestrictPublicBuckets=true
    aws s3api put-bucket-encryption --bucket "$CODE_BUCKET" --server-side-encryption-configuration \
        '{"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}'
    aws s3api put-bucket-versioning --bucket "$CODE_BUCKET" --versioning-configuration Status=Enabled
}

# 1. The job-worker zip, content-addressed so that CloudFormation updates the functions only on change.
zip_package "$ROOT/src" lambdas "$BUILD/lambdas.zip"
DIGEST="$(python3 -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest()[:16])' \
    "$BUILD/lambdas.zip")"
LAMBDA_KEY="${PROJECT_NAME}/lambdas/lambdas-${DIGEST}.zip"
ensure_code_bucket
info "uploading s3://${CODE_BUCKET}/${LAMBDA_KEY}"
aws s3 cp --only-show-errors "$BUILD/lambdas.zip" "s3://${CODE_BUCKET}/${LAMBDA_KEY}"

# 2. The stack (the template is over 51,200 bytes, so it goes through the code bucket).
info "deploying stack ${STACK_NAME} in ${AWS_REGION}"
aws cloudformation deploy \
    --template-file "$ROOT/templates/pipeline.yaml" \
    --stack-name "$STACK_NAME" \
    --s3-bucket "$CODE_BUCKET" --s3-prefix "${PROJECT_NAME}/cloudformation" \
    --capabilities CAPABILITY_NAMED_IAM \
    --no-fail-on-empty-changeset \
    --tags "Project=${PROJECT_NAME}" \
    --parameter-overrides "ProjectName=${PROJECT_NAME}" "LambdaCodeBucket=${CODE_BUCKET}" \
        "LambdaCodeKey=${LAMBDA_KEY}" "${OVERRIDES[@]+"${OVERRIDES[@]}"}"

# The stack's outputs, one "Key<TAB>Value" line each, read once for steps 3 to 5 (every `aws` call is a
# process start; describe-stacks answers with all of them).
OUTPUTS="$(aws cloudformation describe-stacks --stack-name "$STACK_NAME" \
    --query "Stacks[0].Outputs[].[OutputKey, OutputValue]" --output text)"
output() {
    awk -F '\t' -v key="$1" '$1 == key { print $2; exit }' <<< "$OUTPUTS"
}

# 3. The Glue code, until the first Build stage publishes it from the ETL and model branches: both files
#    staged in one folder and uploaded with one `aws s3 cp --recursive`.
GLUE_CODE_URI="$(output GlueCodeUri)"
[[ "$GLUE_CODE_URI" == s3://* ]] || die "stack ${STACK_NAME} has no GlueCodeUri output"
if [[ "$REFRESH_GLUE" == 1 ]] || ! aws s3 ls "${GLUE_CODE_URI}etl.py" >/dev/null 2>&1; then
    GLUE_STAGE="$BUILD/glue-code"
    rm -rf "$GLUE_STAGE"
    mkdir -p "$GLUE_STAGE"
    cp "$ROOT/src/glue_jobs/etl.py" "$GLUE_STAGE/etl.py"
    zip_package "$ROOT/src" training "$GLUE_STAGE/training.zip"
    info "uploading the Glue script and training.zip to ${GLUE_CODE_URI}"
    aws s3 cp --only-show-errors --recursive "$GLUE_STAGE" "$GLUE_CODE_URI"
else
    info "Glue code already at ${GLUE_CODE_URI} (the Build stage keeps it current; --refresh-glue-code overwrites)"
fi

# 4. CodePipeline starts an execution when it creates a pipeline (trigger CreatePipeline; CodePipeline
#    User Guide, "Start a pipeline in CodePipeline"). On a first deployment it runs before the branches and
#    the data exist, and on a recreated pipeline with whatever they held: abandon it. The executions that
#    count come from the pushes, the data and explicit starts. RestartExecutionOnUpdate is false, so an
#    update starts none, and a creation execution that already ended is left as it is.
PIPELINE="$(output PipelineName)"
[[ -n "$PIPELINE" ]] || die "stack ${STACK_NAME} has no PipelineName output"
read -r -a CREATION_RUNS <<< "$(aws codepipeline list-pipeline-executions --pipeline-name "$PIPELINE" \
    --max-items 20 --output text --query \
    "pipelineExecutionSummaries[?trigger.triggerType=='CreatePipeline' && status=='InProgress'].pipelineExecutionId")"
for execution in "${CREATION_RUNS[@]+"${CREATION_RUNS[@]}"}"; do
    [[ "$execution" != None ]] || continue
    info "abandoning execution ${execution}, which ${PIPELINE} started when it was created"
    aws codepipeline stop-pipeline-execution --pipeline-name "$PIPELINE" --pipeline-execution-id "$execution" \
        --abandon --reason "Started by pipeline creation; the first deployment starts one when all sources are in" \
        >/dev/null \
        || info "could not stop execution ${execution} (it may have ended meanwhile)"
done

# 5. What the other scripts and a person need.
awk -F '\t' '{ printf "%-30s %s\n", $1, $2 }' <<< "$OUTPUTS"
info "next: scripts/push_sources.sh --stack-name ${STACK_NAME}, then scripts/upload_data.sh --stack-name ${STACK_NAME}" \
     "(the data upload starts the first execution)"
