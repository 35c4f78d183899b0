"""How the stand-in talks to moto from inside: moto's backends, called directly.

A component that overrides an operation on the gateway cannot reach moto's own answer through the
gateway (its override would answer), and a CloudFormation model runs inside moto already; both use
`backend()`. Requests built from templates are checked against botocore's model of the API first
(`validate`), answers are cut to the API's output shape (`answer`), and moto's errors come back as
the gateway's AwsError (`aws_errors`).
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Any, Iterator

from mlops_local.gateway import AwsError

_SERVICE_MODELS: dict[str, Any] = {}
_SERVICE_MODELS_LOCK = threading.Lock()


def backend(service: str, account_id: str, region_name: str) -> Any:
    """moto's backend of a service, looked up on every call (a moto reset replaces it)."""
    from moto.backends import get_backend
    from moto.utilities.utils import get_partition

    if service == "lambda":  # use_docker False: moto serves Lambda from its "simple" backend
        from moto.awslambda.utils import get_backend as lambda_backend

        return lambda_backend(account_id, region_name)
    key = get_partition(region_name) if service == "s3" else region_name
    return get_backend(service)[account_id][key]  # type: ignore[call-overload]  # any service by name


def service_model(service: str) -> Any:
    """botocore's model of a service (loaded once per process)."""
    from botocore.session import get_session

    with _SERVICE_MODELS_LOCK:
        if service not in _SERVICE_MODELS:
            _SERVICE_MODELS[service] = get_session().get_service_model(service)
        return _SERVICE_MODELS[service]


def validate(service: str, operation: str, request: dict[str, Any]) -> dict[str, Any]:
    """The request, once botocore's model of the operation accepts it (ParamValidationError names
    the bad field) and AWS's own checks would (validation.check raises AWS's error)."""
    from botocore.validate import validate_parameters

    from mlops_local import validation

    validate_parameters(request, service_model(service).operation_model(operation).input_shape)
    validation.check(service, operation, request)  # what AWS checks beyond botocore: max, pattern, enum, limits
    return request


def answer(service: str, operation: str, result: dict[str, Any]) -> dict[str, Any]:
    """A backend's result cut to the members of the operation's output, as moto's server answers."""
    members = service_model(service).operation_model(operation).output_shape.members
    return {key: value for key, value in result.items() if key in members and value is not None}


@contextmanager
def aws_errors() -> Iterator[None]:
    """moto's service errors as AwsError, with the code and message moto's server would answer."""
    from moto.core.exceptions import ServiceException

    try:
        yield
    except ServiceException as exc:
        raise AwsError(str(exc.code), str(exc.message), 400) from None
