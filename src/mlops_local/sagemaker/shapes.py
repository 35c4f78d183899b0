"""SageMaker answers that moto builds, cut to what AWS returns.

moto answers `VpcConfig: {}` (DescribeModel) and `AsyncInferenceConfig: {}` (DescribeEndpointConfig)
for a resource created without them, and `Containers: []` beside a PrimaryContainer; its
DescribeModelPackage leaves out ModelPackageName, which botocore (and the API reference) require,
for a versioned package (moto records the group's name as its name). AWS omits a
configuration that was not given: botocore's model of those structures has required members
(VpcConfig: SecurityGroupIds, Subnets; AsyncInferenceConfig: OutputConfig), so `{}` is not an
answer AWS can give, and the SageMaker SDK v3 resource classes refuse it. An after-hook cannot
rewrite moto's body, so these operations are served here from moto's records, cleaned.

UpdateModelPackage is served here too: moto replaces the package's CustomerMetadataProperties with the
request's (none when it has none) and clears ModelApprovalStatus and ApprovalDescription a request leaves
out; SageMaker changes only what the request gives, and removes metadata keys only when named in
CustomerMetadataPropertiesToRemove (API Reference, UpdateModelPackage). PromoteModel's update must keep the
gate's record.
"""
from __future__ import annotations

from typing import Any

from mlops_local import moto_access
from mlops_local.runtime import Runtime


class ResponseShapes:
    """DescribeModel and DescribeEndpointConfig over moto's records; `register()` wires them."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def register(self) -> "ResponseShapes":
        gateway = self.runtime.aws.gateway
        gateway.operation("SageMaker.DescribeModel", self.describe_model)
        gateway.operation("SageMaker.DescribeEndpointConfig", self.describe_endpoint_config)
        gateway.operation("SageMaker.DescribeModelPackage", self.describe_model_package)
        gateway.operation("SageMaker.UpdateModelPackage", self.update_model_package)
        return self

    def describe_model(self, params: dict[str, Any]) -> dict[str, Any]:
        with moto_access.aws_errors():
            model = self._moto().describe_model(params.get("ModelName", ""))
        answer = without_empty_structures("DescribeModel", model.response_object)
        if answer.get("PrimaryContainer") and not answer.get("Containers"):
            answer.pop("Containers", None)  # a model has a PrimaryContainer or Containers, as created
        return answer

    def describe_endpoint_config(self, params: dict[str, Any]) -> dict[str, Any]:
        with moto_access.aws_errors():
            config = self._moto().describe_endpoint_config(params.get("EndpointConfigName", ""))
        return without_empty_structures("DescribeEndpointConfig", config)

    def describe_model_package(self, params: dict[str, Any]) -> dict[str, Any]:
        with moto_access.aws_errors():
            package = self._moto().describe_model_package(params.get("ModelPackageName", ""))
        answer = without_empty_structures("DescribeModelPackage", package.gen_response_object())
        answer.setdefault("ModelPackageName", package.model_package_name)
        return answer

    def update_model_package(self, params: dict[str, Any]) -> dict[str, Any]:
        sagemaker = self._moto()
        with moto_access.aws_errors():
            package = sagemaker.describe_model_package(params.get("ModelPackageArn", ""))
            arn = sagemaker.update_model_package(
                params.get("ModelPackageArn", ""),
                params.get("ModelApprovalStatus") or package.model_approval_status,
                params.get("ApprovalDescription", package.approval_description),
                {**(package.customer_metadata_properties or {}), **(params.get("CustomerMetadataProperties") or {})},
                params.get("CustomerMetadataPropertiesToRemove") or [],
                params.get("AdditionalInferenceSpecificationsToAdd"))
        return {"ModelPackageArn": arn}

    def _moto(self) -> Any:
        aws = self.runtime.aws
        return moto_access.backend("sagemaker", aws.account_id, aws.gateway.region)


def without_empty_structures(operation: str, result: dict[str, Any]) -> dict[str, Any]:
    """moto's result cut to the operation's output members, less the `{}` it gives for a structure
    botocore gives required members (a configuration the resource was created without)."""
    output = moto_access.service_model("sagemaker").operation_model(operation).output_shape
    answer = moto_access.answer("sagemaker", operation, result)
    for name, value in list(answer.items()):
        shape = output.members[name]
        if value == {} and shape.type_name == "structure" and shape.required_members:
            del answer[name]
    return answer
