"""A fake `aws` CLI for the script tests: the few commands deploy.sh, push_sources.sh and upload_data.sh
send, answered from a JSON state file (FAKE_AWS_STATE) that also records every call.

It keeps what the first-deployment flow depends on: `cloudformation deploy` creates the stack, and
creating the pipeline starts an execution (trigger CreatePipeline) as CodePipeline does; `--query` is
applied with JMESPath and `--output text` printed as the CLI prints it. Run as a program:
`python fake_aws.py SERVICE COMMAND [--option value ...]`.
"""
from __future__ import annotations

import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import jmespath

ACCOUNT = "123456789012"
UNEXPECTED = 99


def parse(args: list[str]) -> tuple[str, dict[str, list[str]]]:
    """'service command' and each --option's values (a flag has none)."""
    command, current = " ".join(args[:2]), None
    options: dict[str, list[str]] = {}
    for arg in args[2:]:
        if arg.startswith("--"):
            current = arg[2:]
            options[current] = []
        elif current is not None:
            options[current].append(arg)
    return command, options


def text(value: Any) -> str:
    """`--output text` of a query result: a list of scalars on one tab-separated line, a list of lists one
    such line per inner list (e.g. `Outputs[].[OutputKey, OutputValue]`)."""
    if value is None:
        return "None"
    if isinstance(value, list) and any(isinstance(item, list) for item in value):
        return "\n".join(text(item) for item in value)
    if isinstance(value, list):
        return "\t".join(text(item) for item in value)
    return str(value)


def answer(response: dict[str, Any], options: dict[str, list[str]]) -> None:
    result = jmespath.search(options["query"][0], response) if "query" in options else response
    output = (options.get("output") or ["json"])[0]
    print(text(result) if output == "text" else json.dumps(result, indent=2))


def fail(code: str, message: str, status: int = 254) -> int:
    print(f"\nAn error occurred ({code}) when calling the operation: {message}", file=sys.stderr)
    return status


def deploy(state: dict[str, Any]) -> None:
    """The stack exists afterwards; the first deploy creates the pipeline, which starts an execution."""
    if not state["stack_created"]:
        state["stack_created"] = True
        state["executions"].insert(0, {"pipelineExecutionId": str(uuid.uuid4()), "status": "InProgress",
                                       "trigger": {"triggerType": "CreatePipeline"}})


def handle(state: dict[str, Any], command: str, options: dict[str, list[str]]) -> int:
    if command == "sts get-caller-identity":
        answer({"Account": ACCOUNT}, options)
    elif command == "cloudformation deploy":
        deploy(state)
    elif command == "cloudformation describe-stacks":
        if not state["stack_created"]:
            return fail("ValidationError", f"Stack with id {options['stack-name'][0]} does not exist", 255)
        answer({"Stacks": [{"StackName": options["stack-name"][0], "Parameters": [],
                            "Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in state["outputs"].items()]}]},
               options)
    elif command in ("s3api head-bucket", "s3 cp"):
        pass
    elif command == "s3 ls":
        return 1  # no such object
    elif command == "codepipeline list-pipeline-executions":
        answer({"pipelineExecutionSummaries": state["executions"][:int((options.get("max-items") or ["1000"])[0])]},
               options)
    elif command == "codepipeline stop-pipeline-execution":
        wanted = options["pipeline-execution-id"][0]
        execution = next(e for e in state["executions"] if e["pipelineExecutionId"] == wanted)
        if state.get("stop_fails") or execution["status"] != "InProgress":
            return fail("PipelineExecutionNotStoppableException", f"execution {wanted} cannot be stopped")
        execution["status"] = "Stopped"
    else:
        print(f"fake aws: unexpected command: {command}", file=sys.stderr)
        return UNEXPECTED
    return 0


def main(args: list[str]) -> int:
    path = Path(os.environ["FAKE_AWS_STATE"])
    state = json.loads(path.read_text())
    command, options = parse(args)
    state["calls"].append(args)
    try:
        return handle(state, command, options)
    finally:
        path.write_text(json.dumps(state, indent=2))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
