#!/usr/bin/env bash
# Put the data set and its dataset config at the keys the pipeline stack reads.
# The config goes first and the data last: a new version of the data object starts the pipeline
# (EventBridge), and that execution then reads the config just uploaded. On a first deployment this is the
# one execution: run it after push_sources.sh, whose branch-creating pushes start none (deploy.sh --help).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/_common.sh
source "$ROOT/scripts/_common.sh"

usage() {
    cat <<USAGE
usage: ${0##*/} [--stack-name NAME] [--data FILE] [--dataset-config FILE]

Uploads the dataset config and then the data set to the pipeline's data bucket.

  --stack-name NAME       pipeline stack (default: mlops-pipeline)
  --data FILE             data set (default: data/diamonds.csv.gz)
  --dataset-config FILE   dataset config YAML (default: data/diamonds.yaml)
  -h, --help              this message

The data upload starts one pipeline execution (the config upload alone starts none). On a first
deployment run this after scripts/push_sources.sh: its execution is then the only one, with every
source (deploy.sh --help). Uploaded before the branches exist, it fails at its Source stage.
USAGE
}

STACK_NAME="mlops-pipeline"
DATA="$ROOT/data/diamonds.csv.gz"
CONFIG="$ROOT/data/diamonds.yaml"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --stack-name) need_value "$1" "$#"; STACK_NAME="$2"; shift 2 ;;
        --data) need_value "$1" "$#"; DATA="$2"; shift 2 ;;
        --dataset-config) need_value "$1" "$#"; CONFIG="$2"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) usage_error "unexpected argument: $1" ;;
    esac
done
[[ -f "$DATA" ]] || usage_error "data file not found: $DATA"
[[ -f "$CONFIG" ]] || usage_error "dataset config not found: $CONFIG"

require_aws
# The stack's outputs, one "Key<TAB>Value" line each, from one describe-stacks (each `aws` call is a
# process start): the stack exists, or the message names deploy.sh.
OUTPUTS="$(aws cloudformation describe-stacks --stack-name "$STACK_NAME" \
    --query "Stacks[0].Outputs[].[OutputKey, OutputValue]" --output text 2>/dev/null)" \
    || die "stack '${STACK_NAME}' not found in ${AWS_REGION}; deploy it with scripts/deploy.sh (or pass --stack-name)"
output() {
    local value
    value="$(awk -F '\t' -v key="$1" '$1 == key { print $2; exit }' <<< "$OUTPUTS")"
    [[ -n "$value" ]] || die "stack ${STACK_NAME} has no $1 output"
    printf '%s\n' "$value"
}
BUCKET="$(output DataBucketName)"
DATA_KEY="$(output DataObjectKey)"
CONFIG_KEY="$(output DatasetConfigKey)"

info "uploading $CONFIG to s3://${BUCKET}/${CONFIG_KEY}"
aws s3 cp --only-show-errors --content-type application/yaml "$CONFIG" "s3://${BUCKET}/${CONFIG_KEY}"
info "uploading $DATA to s3://${BUCKET}/${DATA_KEY} (this starts the pipeline)"
aws s3 cp --only-show-errors "$DATA" "s3://${BUCKET}/${DATA_KEY}"
