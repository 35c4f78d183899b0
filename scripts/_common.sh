# Shared by scripts/*.sh (sourced, never run): messages, the AWS preflight and stack outputs.
# shellcheck shell=bash

die() {
    printf '%s: error: %s\n' "${0##*/}" "$*" >&2
    exit 1
}

info() {
    printf '%s: %s\n' "${0##*/}" "$*" >&2
}

# usage_error MESSAGE: the message, then the calling script's usage, and exit 2.
usage_error() {
    printf '%s: %s\n' "${0##*/}" "$1" >&2
    usage >&2
    exit 2
}

# need_value OPTION "$#": an option that takes a value must have one.
need_value() {
    [[ "$2" -ge 2 ]] || usage_error "option $1 needs a value"
}

# require_aws: the aws CLI, a region and working credentials, or a message that says which is missing.
# Sets AWS_REGION/AWS_DEFAULT_REGION and ACCOUNT_ID. AWS_ENDPOINT_URL (e.g. the local stand-in)
# is honoured by the aws CLI itself.
require_aws() {
    command -v aws >/dev/null 2>&1 \
        || die "the aws CLI is not on PATH; install AWS CLI v2 (https://aws.amazon.com/cli/) and retry"
    local region="${AWS_REGION:-${AWS_DEFAULT_REGION:-}}"
    if [[ -z "$region" ]]; then
        region="$(aws configure get region 2>/dev/null || true)"
    fi
    [[ -n "$region" ]] \
        || die "no AWS region: set AWS_REGION (or run 'aws configure set region <region>')"
    export AWS_REGION="$region" AWS_DEFAULT_REGION="$region"
    local answer
    if ! answer="$(aws sts get-caller-identity --query Account --output text 2>&1)"; then
        die "no usable AWS credentials (aws sts get-caller-identity said: ${answer//$'\n'/ }); " \
            "configure a profile, or export AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
    fi
    ACCOUNT_ID="$answer"
    export ACCOUNT_ID
}

# stack_output STACK KEY: one output value of a stack ("" when the stack has no such output).
stack_output() {
    aws cloudformation describe-stacks --stack-name "$1" \
        --query "Stacks[0].Outputs[?OutputKey=='$2'].OutputValue | [0]" --output text
}

# stack_parameter STACK KEY: one parameter value of a stack.
stack_parameter() {
    aws cloudformation describe-stacks --stack-name "$1" \
        --query "Stacks[0].Parameters[?ParameterKey=='$2'].ParameterValue | [0]" --output text
}

# require_stack STACK: the stack exists, or a message naming deploy.sh.
require_stack() {
    aws cloudformation describe-stacks --stack-name "$1" >/dev/null 2>&1 \
        || die "stack '$1' not found in ${AWS_REGION}; deploy it with scripts/deploy.sh (or pass --stack-name)"
}
