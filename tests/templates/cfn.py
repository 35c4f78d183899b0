"""Helpers for the template tests: load templates with cfn-lint's decoder, walk intrinsic
functions, render `Fn::Sub` strings with sample values, and read pipeline structure."""
from __future__ import annotations

import importlib
import inspect
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

import yaml
from cfnlint.decode import decode

from tests.conftest import ROOT

TEMPLATES = ROOT / "templates"
PIPELINE = TEMPLATES / "pipeline.yaml"
ENDPOINT = TEMPLATES / "endpoint.yaml"
TEST_LAMBDA = TEMPLATES / "test-lambda.yaml"
ALL_TEMPLATES = sorted(p for p in TEMPLATES.glob("*.yaml") if not p.name.startswith("."))

VARIABLE = re.compile(r"#\{([A-Za-z0-9_@\-]+)\.([A-Za-z0-9_@\-]+)\}")
SUB_REF = re.compile(r"\$\{([^}!]+)\}")

# Output variables of the source actions (CodePipeline documentation, "Variables reference").
CODECOMMIT_VARIABLES = {"AuthorDate", "BranchName", "CommitId", "CommitMessage", "CommitterDate",
                        "RepositoryName"}
S3_SOURCE_VARIABLES = {"ETag", "VersionId"}
CODEPIPELINE_VARIABLES = {"PipelineExecutionId"}
SAMPLE_EXECUTION_ID = "3f2c1a7e-5b4d-4c3e-9a1b-0d2e3f4a5b6c"
# The variable whose value is JSON spliced into UserParameters (not a string inside it), and a sample
# value that keeps the text JSON.
SPLICED_VARIABLE = ("#{variables.TrainingHyperparameters}", '{"epochs": "40"}')


@lru_cache(maxsize=None)
def load(path: Path) -> dict[str, Any]:
    template, matches = decode(str(path))
    assert template is not None, f"{path} does not parse: {matches}"
    return template


def resources(template: dict, kind: str | None = None) -> dict[str, dict]:
    return {name: r for name, r in template["Resources"].items() if kind is None or r["Type"] == kind}


def walk(node: Any) -> Iterator[Any]:
    """Every dict, list and scalar inside node."""
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def sub_text(value: Any) -> str:
    """The format string of a plain string or an Fn::Sub (both forms)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Sub" in value:
        sub = value["Fn::Sub"]
        return sub if isinstance(sub, str) else sub[0]
    raise AssertionError(f"expected a string or Fn::Sub, got {value!r}")


def sample_values(template: dict) -> dict[str, str]:
    """A value for every ${Name} a Sub can use: parameter defaults (or a pattern-shaped sample),
    pseudo parameters, resource names and attributes."""
    values = {"AWS::Partition": "aws", "AWS::Region": "us-east-1", "AWS::AccountId": "123456789012",
              "AWS::StackName": "mlops-pipeline", "AWS::URLSuffix": "amazonaws.com"}
    samples = {"LambdaCodeBucket": "mlops-deploy-123456789012-us-east-1",
               "LambdaCodeKey": "mlops/lambdas/lambdas-0123456789abcdef.zip"}
    for name, parameter in template.get("Parameters", {}).items():
        values[name] = str(parameter.get("Default", samples.get(name, f"sample-{name.lower()}")))
    project = values.get("ProjectName", "mlops")
    for name, resource in template["Resources"].items():
        if resource["Type"] == "AWS::IAM::Role":
            values[f"{name}.Arn"] = f"arn:aws:iam::123456789012:role/{project}-{name.lower()}"
        elif resource["Type"] == "AWS::KMS::Key":
            values[f"{name}.Arn"] = "arn:aws:kms:us-east-1:123456789012:key/0123abcd-0123-4567-89ab-0123456789ab"
        elif resource["Type"] == "AWS::S3::Bucket":
            values[f"{name}.Arn"] = f"arn:aws:s3:::{project}-{name.lower()}"
        values[name] = f"{project}-{name.lower()}"
    return values


def render(value: Any, template: dict, variables: str | None = "1", splice: bool = True) -> str:
    """A Sub (or plain) string with ${...} filled from sample_values and, unless variables is None,
    every #{Namespace.Variable} replaced by `variables`; the spliced JSON variable gets a sample object
    unless splice is False (the text as CodePipeline stores it)."""
    values = sample_values(template)
    if isinstance(value, dict) and isinstance(value.get("Fn::Sub"), list):
        values.update({k: str(v) for k, v in value["Fn::Sub"][1].items()})

    def fill(match: re.Match) -> str:
        assert match.group(1) in values, f"${{{match.group(1)}}} names nothing in the template"
        return values[match.group(1)]

    text = SUB_REF.sub(fill, sub_text(value))
    if variables is not None:
        text = VARIABLE.sub(lambda m: SAMPLE_EXECUTION_ID if m.group(1) == "codepipeline" else variables,
                            text.replace(*SPLICED_VARIABLE))
    elif splice:
        text = text.replace(*SPLICED_VARIABLE)
    return text


# -- pipeline structure ---------------------------------------------------------------------
def pipeline_resource() -> dict:
    (pipeline,) = resources(load(PIPELINE), "AWS::CodePipeline::Pipeline").values()
    return pipeline["Properties"]


def stages() -> list[dict]:
    return pipeline_resource()["Stages"]


def actions() -> Iterator[tuple[int, dict, dict]]:
    """(stage index, stage, action) in pipeline order."""
    for index, stage in enumerate(stages()):
        for action in stage["Actions"]:
            yield index, stage, action


def provider(action: dict) -> str:
    return action["ActionTypeId"]["Provider"]


def earlier(action_a: tuple[int, dict], action_b: tuple[int, dict]) -> bool:
    """Does (stage index, action) a run, and finish, before b starts?"""
    (stage_a, a), (stage_b, b) = action_a, action_b
    return stage_a < stage_b or (stage_a == stage_b and int(a["RunOrder"]) < int(b["RunOrder"]))


def lambda_function(action: dict) -> tuple[dict, str]:
    """The function a Lambda action invokes (from pipeline.yaml or test-lambda.yaml) and its handler."""
    name = action["Configuration"]["FunctionName"]
    pipeline = load(PIPELINE)
    if isinstance(name, dict) and "Ref" in name:
        function = pipeline["Resources"][name["Ref"]]
        return function, function["Properties"]["Handler"]
    wanted = sub_text(name)
    for function in resources(load(TEST_LAMBDA), "AWS::Lambda::Function").values():
        if sub_text(function["Properties"]["FunctionName"]) == wanted:
            return function, function["Properties"]["ImageConfig"]["Command"][0]
    raise AssertionError(f"no template defines the function {wanted!r}")


def handler_function(handler: str):
    module_name, _, attribute = handler.rpartition(".")
    module = importlib.import_module(module_name)
    return module, getattr(module, attribute)


def worker_schema(handler: str) -> dict:
    """The UserParameters schema of a handler: SUBMIT_SCHEMA / MONITOR_SCHEMA / SCHEMA."""
    module, _ = handler_function(handler)
    attribute = handler.rpartition(".")[2]
    for prefix in ("submit", "monitor"):
        if attribute.startswith(prefix):
            return getattr(module, f"{prefix.upper()}_SCHEMA")
    return module.SCHEMA


def module_exports(handler: str, variable: str) -> bool:
    """Does the worker's module name `variable` as a string literal (its Done(...) variables)?"""
    module, _ = handler_function(handler)
    return f'"{variable}"' in inspect.getsource(module)


def buildspec(path: str) -> dict:
    return yaml.safe_load((ROOT / path).read_text())
