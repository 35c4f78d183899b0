"""The CloudFormation resource types moto drops, created by moto's own CloudFormation.

`Stacks.register()` installs the models of `mlops_local.cloudformation.stack_models` into moto's
CloudFormation, the handler-permission checks and rollbacks of `stack_permissions`, and recomputes a
stack's outputs after ExecuteChangeSet (moto keeps the old ones); `render` shows a deployed stack as
moto resolved it, and `apply` re-creates provided resources deleted out of band.
"""
from __future__ import annotations

import copy
import json
import logging
from typing import Any

from mlops_local.moto_access import backend
from mlops_local.runtime import Runtime
from mlops_local.cloudformation import bucket_properties, stack_permissions
from mlops_local.cloudformation.stack_models import install_models

logger = logging.getLogger(__name__)

ACCOUNT_AND_REGION_OF_STACK_ID = slice(3, 5)  # arn:aws:cloudformation:<region>:<account>:stack/...


def parse_template(template: str) -> dict[str, Any]:
    """moto's Stack.parse_template with libyaml's parser (when PyYAML was built with it): the same
    constructors, moto's short forms (!Ref ...) as installed, so the same dict, ~8x faster; a deploy of
    pipeline.yaml (~2,400 lines) parses it three times (the stack, the change set, its outputs)."""
    import yaml
    from moto.cloudformation import models
    from yaml.parser import ParserError
    from yaml.scanner import ScannerError

    loader = getattr(yaml, "CLoader", yaml.Loader)
    yaml.add_multi_constructor("", models.yaml_tag_constructor, Loader=loader)  # as moto does, per parse
    try:
        parsed: dict[str, Any] = yaml.load(template, Loader=loader)
    except (ParserError, ScannerError):  # moto's fallback: a JSON template
        parsed = json.loads(template)
    return parsed


def _parse_templates_with_libyaml() -> None:
    from moto.cloudformation import models

    def parse_change_set_template(change_set: Any) -> None:
        change_set.template_dict = parse_template(change_set.template)

    models.Stack.parse_template = staticmethod(parse_template)  # type: ignore[method-assign]
    models.ChangeSet._parse_template = parse_change_set_template  # type: ignore[method-assign,assignment]


class Stacks:
    """Registers the models; `render` and `apply` look at one deployed stack."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def register(self) -> None:
        install_models()
        _parse_templates_with_libyaml()
        bucket_properties.install()  # the AWS::S3::Bucket properties moto's CloudFormation drops
        stack_permissions.install(self.runtime)  # handler permissions, and AWS's rollback when a resource fails
        self.runtime.aws.gateway.after("cloudformation", "ExecuteChangeSet", self.after_execute_change_set)

    def after_execute_change_set(self, params: dict[str, Any], status: int, body: bytes) -> None:
        """moto applies a change set's resources but keeps the stack's old outputs (none, for a
        CREATE change set: `aws cloudformation deploy` then finds no outputs); compute them again."""
        if status != 200:
            return
        change_set_id = params.get("ChangeSetName", "")
        if change_set_id.startswith("arn:"):
            region, account_id = change_set_id.split(":")[ACCOUNT_AND_REGION_OF_STACK_ID]
            cloudformation = backend("cloudformation", account_id, region)
            stack = cloudformation.stacks[cloudformation.change_sets[change_set_id].stack_id]
        else:
            stack = self._stack(params["StackName"])
        if stack.status not in ("CREATE_COMPLETE", "UPDATE_COMPLETE"):
            return  # rolled back (stack_permissions): no outputs to compute, nothing to create by computing them
        stack._parse_template()
        stack.output_map = stack._create_output_map()

    def _stack(self, stack_name: str) -> Any:
        described = self.runtime.aws.client("cloudformation").describe_stacks(StackName=stack_name)
        region, account_id = described["Stacks"][0]["StackId"].split(":")[ACCOUNT_AND_REGION_OF_STACK_ID]
        return backend("cloudformation", account_id, region).get_stack(described["Stacks"][0]["StackId"])

    def render(self, stack_name: str) -> dict[str, Any]:
        """The deployed template with parameters, conditions and intrinsics resolved by moto.

        Resources whose Condition is false are left out; `Properties` are as the resource received
        them (physical ids of the stack's resources, AWS::NoValue removed).
        """
        from moto.cloudformation.parsing import clean_json

        stack = self._stack(stack_name)
        resource_map = stack.resource_map
        resources = {}
        for logical_id, resource in stack.template_dict.get("Resources", {}).items():
            condition = resource.get("Condition")
            if condition and not resource_map.lazy_condition_map[condition]:
                continue
            rendered = copy.deepcopy(resource)
            rendered["Properties"] = clean_json(copy.deepcopy(resource.get("Properties", {})), resource_map)
            resources[logical_id] = rendered
        return {"Parameters": dict(resource_map.resolved_parameters), "Resources": resources,
                "Outputs": {o.key: o.value for o in stack.output_map.values()}}

    def apply(self, stack_name: str) -> dict[str, str]:
        """Create again what this module provides for the stack and is missing (deleted out of band).

        moto's CloudFormation creates, updates and deletes these resources itself once `register`
        ran; `apply` is the idempotent check the pipeline engine and the CLI call after a deploy.
        Returns logical id -> physical id of every provided resource of the stack.
        """
        stack = self._stack(stack_name)
        models = install_models()
        applied = {}
        for logical_id, resource in self.render(stack_name)["Resources"].items():
            model = models.get(resource["Type"])
            if model is None:
                continue
            deployed = stack.resource_map._parsed_resources.get(logical_id)
            name = deployed.name if deployed is not None else None
            if name is None or not model.found(deployed):
                created = model.create_from_cloudformation_json(
                    name or f"{stack.name}-{logical_id}", resource, stack.account_id, stack.region_name,
                    StackId=stack.stack_id)
                created.logical_resource_id, created.cf_resource_type = logical_id, resource["Type"]
                stack.resource_map._parsed_resources[logical_id] = created
                deployed = created
                logger.info("stack %s: %s %s was missing; created it again", stack_name, logical_id, created.name)
            applied[logical_id] = deployed.physical_resource_id
        return applied
