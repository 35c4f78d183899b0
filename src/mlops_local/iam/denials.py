"""The error a service answers an IAM denial with: its error code and HTTP status.

Services differ by protocol: the query (IAM, STS, CloudFormation, CloudWatch) and REST-XML (S3)
services answer `AccessDenied` with 403; the JSON services answer `AccessDeniedException` with
400 (each API reference's "Common Errors": "AccessDeniedException ... HTTP Status Code: 400");
the REST-JSON ones (Lambda) with 403. Observed answers that confirm the table:
- S3: botocore's s3 model, shape AccessDenied, httpStatusCode 403;
- Lambda: "(Service: AWSLambda; Status Code: 403; Error Code: AccessDeniedException ...)"
  (github.com/awslabs/aws-deployment-framework/issues/460);
- Glue: "(Service: AWSGlue; Status Code: 400; Error Code: AccessDeniedException ...)"
  (github.com/dacort/metabase-athena-driver/issues/105);
- CloudFormation: "An error occurred (AccessDenied) when calling the CreateStack operation"
  (github.com/aws-samples/aws-modern-application-workshop/issues/42);
- SageMaker: "An error occurred (AccessDeniedException) when calling the CreateTrainingJob
  operation" (github.com/aws-samples/aws-modern-application-workshop/issues/253);
- SNS: botocore's sns model, AuthorizationErrorException: code AuthorizationError, 403.
A service not in the table follows its protocol (botocore's service model), as listed above.
"""
from __future__ import annotations

from functools import lru_cache

import botocore.session

# Keyed by botocore service name (the API the caller spoke to: InvokeEndpoint is
# "sagemaker-runtime" although its IAM action is sagemaker:InvokeEndpoint).
ACCESS_DENIED: dict[str, tuple[str, int]] = {
    "s3": ("AccessDenied", 403),
    "sts": ("AccessDenied", 403),
    "iam": ("AccessDenied", 403),
    "cloudformation": ("AccessDenied", 403),
    "cloudwatch": ("AccessDenied", 403),
    "sns": ("AuthorizationError", 403),
    "lambda": ("AccessDeniedException", 403),
    "sagemaker-runtime": ("AccessDeniedException", 403),  # REST-JSON, as Lambda
    "glue": ("AccessDeniedException", 400),
    "sagemaker": ("AccessDeniedException", 400),
    "codepipeline": ("AccessDeniedException", 400),
    "codebuild": ("AccessDeniedException", 400),
    "codecommit": ("AccessDeniedException", 400),
    "kms": ("AccessDeniedException", 400),
    "logs": ("AccessDeniedException", 400),
    "ecr": ("AccessDeniedException", 400),
    "events": ("AccessDeniedException", 400),
    "application-autoscaling": ("AccessDeniedException", 400),
}

_BY_PROTOCOL = {
    "query": ("AccessDenied", 403),
    "rest-xml": ("AccessDenied", 403),
    "ec2": ("UnauthorizedOperation", 403),
    "json": ("AccessDeniedException", 400),
    "rest-json": ("AccessDeniedException", 403),
}


def access_denied_error(service: str) -> tuple[str, int]:
    """(error code, HTTP status) for a denied request to this botocore service."""
    return ACCESS_DENIED.get(service) or _by_protocol(service)


@lru_cache(maxsize=None)
def _by_protocol(service: str) -> tuple[str, int]:
    try:
        model = botocore.session.get_session().get_service_model(service)
    except botocore.exceptions.UnknownServiceError:
        raise ValueError(f"no such AWS service: {service!r}") from None
    protocols = model.metadata.get("protocols") or [model.protocol]
    # Newer models list smithy-rpc-v2-cbor first; the service answers JSON clients as JSON.
    for protocol in protocols:
        if protocol in _BY_PROTOCOL:
            return _BY_PROTOCOL[protocol]
    raise ValueError(f"no access-denied answer known for {service!r} (protocols {protocols})")
