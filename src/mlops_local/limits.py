"""Documented limits botocore's models do not carry, each row citing where AWS says it.

`validation.findings` applies the rows of a request's service and operation after the walk over
botocore's shapes. A check returns constraint findings (answered in Coral's words with the service's
validation code) or AwsErrors with the code AWS answers that limit with. A row without operations is
no request: the CodePipeline engine calls `resolved_configuration_errors` when it resolves an action.
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any, Callable, Mapping
from urllib.parse import unquote, urlsplit

from mlops_local.gateway import AwsError
from mlops_local.validation import Finding

Found = list[AwsError | Finding]


@dataclass(frozen=True)
class Limit:
    """One documented limit: where it applies, what it says, and where AWS says it."""
    service: str
    operations: tuple[str, ...]
    rule: str
    source: str
    check: Callable[[dict[str, Any]], Found]


def utf8_size(value: Any) -> int:
    return len(str(value).encode("utf-8"))


# -- CodePipeline -------------------------------------------------------------------------------
def _stages(params: dict[str, Any]) -> Found:
    stages = (params.get("pipeline") or {}).get("stages") or []
    found: Found = []
    if not 2 <= len(stages) <= 50:
        bound = "greater than or equal to 2" if len(stages) < 2 else "less than or equal to 50"
        found.append(Finding("pipeline.stages", stages, f"Member must have length {bound}", False))
    for index, stage in enumerate(stages, 1):
        actions = stage.get("actions") or []
        if not 1 <= len(actions) <= 50:
            bound = "greater than or equal to 1" if not actions else "less than or equal to 50"
            found.append(Finding(f"pipeline.stages.{index}.member.actions", actions,
                                 f"Member must have length {bound}", False))
    total = sum(len(stage.get("actions") or []) for stage in stages)
    if total > 500:
        found.append(AwsError("ValidationException", f"The pipeline has {total} actions; the maximum number of "
                                                     "actions per pipeline is 500"))
    return found


def _parameter_overrides(params: dict[str, Any]) -> Found:
    found: Found = []
    for s, stage in enumerate((params.get("pipeline") or {}).get("stages") or [], 1):
        for a, action in enumerate(stage.get("actions") or [], 1):
            overrides = (action.get("configuration") or {}).get("ParameterOverrides")
            if overrides is not None and utf8_size(overrides) > 1024:
                found.append(AwsError(
                    "InvalidActionDeclarationException",
                    f"Action configuration for action '{action.get('name')}' of stage '{stage.get('name')}' "
                    f"(pipeline.stages.{s}.member.actions.{a}.member): ParameterOverrides is "
                    f"{utf8_size(overrides)} bytes; the JSON object can be at most 1 kilobyte"))
    return found


def _output_variables(params: dict[str, Any]) -> Found:
    variables = params.get("outputVariables") or {}
    size = sum(utf8_size(k) + utf8_size(v) for k, v in variables.items())
    if size > 122880:
        return [AwsError("OutputVariablesSizeExceededException",
                         f"The output variables of the action are {size} bytes; all output variables combined "
                         "can be at most 122880 bytes")]
    return []


RESOLVED_CONFIGURATION_BYTES = 100 * 1024


def resolved_configuration_errors(configuration: Mapping[str, Any]) -> list[AwsError]:
    """An action's configuration once its variables are resolved, checked against the 100 KB quota.
    Measured as compact JSON in UTF-8 (keys, values, quotes and separators: never less than AWS's
    count, whatever it counts). The code is the action's ErrorDetails.code."""
    size = len(json.dumps(dict(configuration), separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
    if size > RESOLVED_CONFIGURATION_BYTES:
        return [AwsError("ConfigurationError",
                         f"The resolved action configuration is {size} bytes; the total resolved action "
                         f"configuration of an action can be at most 100 KB ({RESOLVED_CONFIGURATION_BYTES} bytes)")]
    return []


def _resolved_configuration(configuration: dict[str, Any]) -> Found:
    return list(resolved_configuration_errors(configuration))


# -- Lambda -------------------------------------------------------------------------------------
def _lambda_environment(params: dict[str, Any]) -> Found:
    variables = (params.get("Environment") or {}).get("Variables") or {}
    measured = json.dumps(variables, separators=(",", ":"))
    if len(measured.encode("utf-8")) > 4096:
        return [AwsError("InvalidParameterValueException",
                         "Lambda was unable to configure your environment variables because the environment "
                         f"variables you have provided exceeded the 4KB limit. String measured: {measured}")]
    return []


# -- CloudFormation -----------------------------------------------------------------------------
TEMPLATE_URL_BYTES = 1024 * 1024
# (section, maximum, message); AWS's words as observed: "Template format error: Number of resources, 214, is
# greater than maximum allowed, 200" (aditmalik-synechron/serverless-nested-stack#5), "Outputs count 78 is greater
# than max allowed 60" (dougmoscrop/serverless-plugin-split-stacks#43), "Parameter count 86 is greater than max
# allowed 60" (remind101/empire#861), each before the quotas were raised to today's numbers. The mappings
# message is not observed; it follows the outputs one.
TEMPLATE_SECTIONS = (
    ("Parameters", 200, "Template format error: Parameter count {n} is greater than max allowed {max}"),
    ("Mappings", 200, "Template format error: Mappings count {n} is greater than max allowed {max}"),
    ("Resources", 500, "Template format error: Number of resources, {n}, is greater than maximum allowed, {max}"),
    ("Outputs", 200, "Template format error: Outputs count {n} is greater than max allowed {max}"),
)


def parse_template(text: str) -> dict[str, Any] | None:
    """A template's top level (JSON or YAML; short-form intrinsics read as null), None if unreadable."""
    import yaml

    try:
        template = json.loads(text)
    except ValueError:
        try:
            template = yaml.load(text, Loader=_template_loader())
        except yaml.YAMLError:
            return None
    return template if isinstance(template, dict) else None


@functools.lru_cache(maxsize=None)
def _template_loader() -> Any:
    """YAML's safe loader (libyaml's when built), reading CloudFormation's short forms (!Ref ...) as null."""
    import yaml

    base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    loader: Any = type("TemplateLoader", (base,), {})
    loader.add_multi_constructor("!", lambda _loader, _suffix, _node: None)
    return loader


def template_counts(text: str) -> list[AwsError]:
    template = parse_template(text)
    if template is None:
        return []  # CloudFormation's own parser answers a malformed template
    for section, maximum, message in TEMPLATE_SECTIONS:
        declared = template.get(section)
        if isinstance(declared, dict) and len(declared) > maximum:
            return [AwsError("ValidationError", message.format(n=len(declared), max=maximum))]
    return []


def template_object(url: str) -> bytes | None:
    """The S3 object a TemplateURL names, read from moto's S3 (path or virtual-hosted style), None if none."""
    from mlops_local.gateway import account_id
    from mlops_local.moto_access import backend

    parts = urlsplit(url)
    host, path = parts.hostname or "", unquote(parts.path).lstrip("/")
    if host.startswith(("s3.", "s3-")) or host in ("localhost", "127.0.0.1"):
        bucket, _, key = path.partition("/")
    elif ".s3." in host or ".s3-" in host:
        bucket, key = host.split(".s3", 1)[0], path
    else:
        return None
    try:
        found = backend("s3", account_id(), "us-east-1").get_object(bucket, key)
    except Exception:  # no such bucket or key: CloudFormation's own fetch answers
        return None
    return bytes(found.value) if found is not None else None


def _template(params: dict[str, Any]) -> Found:
    found: Found = []
    body, url = params.get("TemplateBody"), params.get("TemplateURL")
    if isinstance(body, str):
        if utf8_size(body) > 51200:
            found.append(Finding("templateBody", body, "Member must have length less than or equal to 51200", False))
        else:
            found.extend(template_counts(body))
    elif isinstance(url, str):
        fetched = template_object(url)
        if fetched is not None and len(fetched) > TEMPLATE_URL_BYTES:
            found.append(AwsError("ValidationError", f"Template may not exceed {TEMPLATE_URL_BYTES} bytes in size."))
        elif fetched is not None:
            found.extend(template_counts(fetched.decode("utf-8", "replace")))
    for parameter in params.get("Parameters") or []:
        value = parameter.get("ParameterValue")
        if isinstance(value, str) and utf8_size(value) > 4096:
            found.append(AwsError("ValidationError", f"Parameter '{parameter.get('ParameterKey')}' value is "
                                                     f"{utf8_size(value)} bytes; a parameter value can be at most "
                                                     "4,096 bytes"))
    return found


# -- the table ----------------------------------------------------------------------------------
CODEPIPELINE_QUOTAS = "Quotas in AWS CodePipeline, docs.aws.amazon.com/codepipeline/latest/userguide/limits.html"
CLOUDFORMATION_QUOTAS = ("AWS CloudFormation quotas, "
                         "docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/cloudformation-limits.html")
TEMPLATE_OPERATIONS = ("CreateStack", "UpdateStack", "CreateChangeSet", "ValidateTemplate")
LIMITS: tuple[Limit, ...] = (
    Limit("codepipeline", ("CreatePipeline", "UpdatePipeline"),
          "Number of stages in a pipeline: minimum of 2, maximum of 50; number of actions in a stage: minimum of 1, "
          "maximum of 50; maximum number of actions per pipeline: 500", CODEPIPELINE_QUOTAS, _stages),
    Limit("codepipeline", ("CreatePipeline", "UpdatePipeline"),
          "Maximum size of the JSON object that can be stored in the ParameterOverrides property: 1 kilobyte",
          CODEPIPELINE_QUOTAS, _parameter_overrides),
    Limit("codepipeline", ("PutJobSuccessResult",),
          "Variable quotas: a maximum size limit of 122880 bytes for all output variables combined for a "
          "particular action", CODEPIPELINE_QUOTAS, _output_variables),
    Limit("codepipeline", (),  # at run time, not a request: the engine calls resolved_configuration_errors
          "Variable quotas: a maximum size limit of 100 KB for the total resolved action configuration for a "
          "particular action", CODEPIPELINE_QUOTAS, _resolved_configuration),
    Limit("lambda", ("CreateFunction", "UpdateFunctionConfiguration"),
          "Function environment variables: 4 KB, for all environment variables associated with the function, in "
          "aggregate", "Lambda quotas, docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html",
          _lambda_environment),
    Limit("cloudformation", TEMPLATE_OPERATIONS,
          "Template body size in a request: 51,200 bytes; in an Amazon S3 object (TemplateURL): 1 MB; parameter "
          "value: 4,096 bytes; per template at most 200 parameters, 200 mappings, 500 resources, 200 outputs "
          "(TemplateURL size error: 'Template may not exceed 460800 bytes in size.', amazon-archives/"
          "aws-security-benchmark#2, before the quota became 1 MB, aws-cloudformation/rain#601)",
          CLOUDFORMATION_QUOTAS, _template),
)
# Carried by botocore's models already (and checked by the walk), documented alike: CodePipeline action
# configuration key <= 50 and value <= 1000 characters ("Maximum length of the action configuration value ...
# 1000 characters", Quotas in AWS CodePipeline); SageMaker CreateTrainingJob HyperParameters: at most 100
# entries, keys <= 256, values <= 2500 characters (CreateTrainingJob API reference, HyperParameters).
