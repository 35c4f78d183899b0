"""Each stack resource's handler permissions checked as CloudFormation acts, and AWS's ending when one fails.

CloudFormation runs a resource's handlers as the stack's role (a session `.../assumed-role/<role>/
AWSCloudFormation`, after checking the role's trust policy lets cloudformation.amazonaws.com assume it)
or, without RoleARN, as the caller of the request that started the operation ("If no role is available,
AWS CloudFormation uses a temporary session that is generated from your user credentials", CreateStack
RoleARN). moto 5.2.5 creates, updates and deletes a stack's resources inside the CreateStack /
UpdateStack / ExecuteChangeSet / DeleteStack request, on the request's thread, so the caller is the
gateway's `current_principal()` (the mlops-local administrator is allowed everything). Each resource
operation is recorded in the access log (operation "<type> create|update|delete", the handler actions
of cloudformation.handler_permissions) and, when the gateway enforces, a denial fails that resource with
CloudFormation's message; with enforcement off (a debugging switch) it is recorded and nothing fails.

moto's own behaviour when a resource fails: the request answers 500 and the stack stays
CREATE_IN_PROGRESS with what was created. Here, as on AWS, the request succeeds and the stack ends:
- create: the resource CREATE_FAILED, ROLLBACK_IN_PROGRESS ("The following resource(s) failed to
  create: [X]. Rollback requested by user."), the resources created so far deleted (checked too: a
  denied delete leaves the resource and ends ROLLBACK_FAILED, as AWS does), ROLLBACK_COMPLETE;
- update: UPDATE_FAILED, UPDATE_ROLLBACK_IN_PROGRESS, the previous template and parameters restored
  (what the update created deleted, what it changed updated back, what it removed created again),
  UPDATE_ROLLBACK_COMPLETE (UPDATE_ROLLBACK_FAILED when a rollback step is denied);
- delete: the resource DELETE_FAILED, the others deleted, the stack DELETE_FAILED and still listed.
Differences kept: moto deletes the resources an update removes first, AWS in the cleanup after the
update; a denied removal is recorded (DELETE_FAILED) and the resource kept, and the update goes on, as
AWS's cleanup does. A replacement (a createOnly property changed) is checked as create + delete at once
(AWS deletes the old resource in the cleanup: stricter here). Rollback steps of types moto drops are not
checked (the forward step was).

The patch (`install`, called by Stacks.register, once per process; the latest runtime's access log and
enforce switch are used): four CloudFormationBackend methods set the operation and settle its ending;
parsing.parse_and_create_resource / parse_and_update_resource are moto's own, with the check between
naming and creating; ResourceMap._delete_resource checks before deleting; DeleteStack's RoleARN is read.
Types moto drops (it skips them) are checked all the same: on AWS their handlers run. What is checked,
and as whom, is cloudformation.stack_checks'.

Over 400 lines on purpose: moto's four stack operations, its three resource steps and the rollbacks share
one record of the operation (StackOperation); split, an ending would live apart from the steps it undoes.
"""
from __future__ import annotations

import contextlib
import contextvars
import copy
import functools
import logging
import threading
import time
import weakref
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from mlops_local.cloudformation import handler_permissions as hp
from mlops_local.cloudformation.stack_checks import acting_principal, authorization, failure_reason

if TYPE_CHECKING:
    from mlops_local.iam.principals import Principal
    from mlops_local.runtime import Runtime

logger = logging.getLogger(__name__)

STACK_TYPE = "AWS::CloudFormation::Stack"


class ResourceFailed(Exception):
    """A resource's handler failed (denied, or its service refused): the stack rolls back."""

    def __init__(self, logical_id: str, reason: str) -> None:
        super().__init__(reason)
        self.logical_id, self.reason = logical_id, reason


class _WouldCreate(Exception):
    """Resolving properties would create a resource (moto's map is lazy): resolve nothing then."""


@dataclass
class StackOperation:
    """One stack operation in progress on this thread: who acts, and what it did so far."""
    kind: str  # create | update | delete
    principal: Principal | None  # None: no request behind it (the stand-in's own call): unchecked
    backend: Any
    stack: Any = None  # moto's Stack (a create finds it once moto made it)
    rolling_back: bool = False
    resolving: bool = False
    created: list[str] = field(default_factory=list)
    updated: set[str] = field(default_factory=set)
    properties: dict[str, dict[str, Any]] = field(default_factory=dict)  # logical id -> resolved, as deployed
    started: set[tuple[str, str]] = field(default_factory=set)
    failures: dict[str, tuple[str, str]] = field(default_factory=dict)  # logical id -> (verb, reason)
    errors: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # service errors: (type, verb, reason)
    rollback_failures: dict[str, str] = field(default_factory=dict)

    def bind(self, resource_map: Any) -> Any:
        if self.stack is None:
            self.stack = self.backend.stacks.get(resource_map.stack_id)
        return self.stack


_OPERATION: contextvars.ContextVar[StackOperation | None] = contextvars.ContextVar("stack_operation", default=None)
_DELETE_ROLE: contextvars.ContextVar[str | None] = contextvars.ContextVar("delete_role", default=None)
_runtime: Callable[[], Runtime | None] = lambda: None  # noqa: E731  # the latest registered runtime (weak)
_install_lock = threading.Lock()
_installed: dict[str, Any] = {}  # moto's originals, once patched


def install(runtime: Runtime) -> None:
    """Patch moto's CloudFormation (once per process) and judge with this runtime's log and switch."""
    global _runtime
    _runtime = weakref.ref(runtime)
    from moto.cloudformation import models, parsing, responses

    with _install_lock:
        if _installed:
            return
        backend = models.CloudFormationBackend
        for name, wrapper in (("create_stack", _create_stack), ("update_stack", _update_stack),
                              ("execute_change_set", _execute_change_set), ("delete_stack", _delete_stack)):
            _installed[name] = getattr(backend, name)
            setattr(backend, name, functools.wraps(_installed[name])(wrapper))
        _installed["parse_and_create_resource"] = parsing.parse_and_create_resource
        _installed["parse_and_update_resource"] = parsing.parse_and_update_resource
        parsing.parse_and_create_resource = _parse_and_create_resource
        parsing.parse_and_update_resource = _parse_and_update_resource
        _installed["_delete_resource"] = parsing.ResourceMap._delete_resource
        parsing.ResourceMap._delete_resource = _delete_resource  # type: ignore[method-assign]
        _installed["response_delete_stack"] = responses.CloudFormationResponse.delete_stack
        responses.CloudFormationResponse.delete_stack = _response_delete_stack  # type: ignore[method-assign]


def _enforcing() -> bool:
    runtime = _runtime()
    return runtime is None or runtime.aws.gateway.enforce


def _who(backend: Any, role_arn: str | None) -> Principal | None:
    return acting_principal(role_arn, backend.account_id, backend.region_name, enforce=_enforcing())


# -- the backend operations --------------------------------------------------------------------------------
def _create_stack(self: Any, name: str, template: str, parameters: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
    op = StackOperation("create", _who(self, kwargs.get("role_arn")), self)
    with _operation(op):
        try:
            stack = _installed["create_stack"](self, name, template, parameters, *args, **kwargs)
        except Exception as exc:
            stack = op.stack or next((s for s in self.stacks.values() if s.name == name), None)
            if stack is None or not _settle(op, exc):
                raise
            _roll_back_create(op, stack)
        _stack_event_first(stack)
        return stack


def _update_stack(self: Any, name: str, template: str, role_arn: str | None, parameters: Any,
                  tags: dict[str, str] | None) -> Any:
    stack = self.get_stack(name)
    role_arn = role_arn or stack.role_arn  # UpdateStack without RoleARN keeps the stack's role (moto drops it)
    op = StackOperation("update", _who(self, role_arn), self, stack)
    saved = _Saved.of(stack)
    with _operation(op):
        op.properties = _resolved_all(op, stack.resource_map)
        try:
            return _installed["update_stack"](self, name, template, role_arn, parameters, tags)
        except Exception as exc:
            if not _settle(op, exc):
                raise
            _roll_back_update(op, stack, saved)
            return stack


def _execute_change_set(self: Any, change_set_name: str, stack_name: str | None = None) -> None:
    change_set = self.describe_change_set(change_set_name)
    stack = self.stacks[change_set.stack_id]
    role_arn = change_set.role_arn or stack.role_arn
    kind = "create" if change_set.change_set_type == "CREATE" else "update"
    op = StackOperation(kind, _who(self, role_arn), self, stack)
    saved = _Saved.of(stack)
    with _operation(op):
        op.properties = _resolved_all(op, stack.resource_map) if kind == "update" else {}
        try:
            _installed["execute_change_set"](self, change_set_name, stack_name)
        except Exception as exc:
            if not _settle(op, exc):
                raise
            change_set.execution_status = "EXECUTE_FAILED"
            if kind == "create":
                stack.template = change_set.template
                _roll_back_create(op, stack)
            else:
                _roll_back_update(op, stack, saved)


def _response_delete_stack(self: Any) -> Any:
    token = _DELETE_ROLE.set(self._get_param("RoleARN"))
    try:
        return _installed["response_delete_stack"](self)
    finally:
        _DELETE_ROLE.reset(token)


def _delete_stack(self: Any, name_or_stack_id: str) -> None:
    stack = self.stacks.get(name_or_stack_id) or next(
        (s for s in self.stacks.values() if s.name == name_or_stack_id), None)
    if stack is None:
        return _installed["delete_stack"](self, name_or_stack_id)
    role_arn = _DELETE_ROLE.get() or stack.role_arn
    op = StackOperation("delete", _who(self, role_arn), self, stack)
    exports = [export for export in self.exports.values() if export.exporting_stack_id == stack.stack_id]
    with _operation(op):
        op.properties = _resolved_all(op, stack.resource_map)
        for logical_id, resource_type in _dropped(stack.resource_map):  # moto never made them: checked only
            with contextlib.suppress(ResourceFailed):
                _allowed(op, stack.resource_map, logical_id, resource_type, hp.Operation.DELETE,
                         op.properties.get(logical_id, {}), "", self.account_id, self.region_name)
        try:
            _installed["delete_stack"](self, stack.stack_id)
        except Exception as exc:
            if not _settle(op, exc):
                raise
        if not op.failures:
            return None
    # DELETE_FAILED: the stack stays, with what could not be deleted (moto had already let go of it).
    if stack.events and (stack.events[-1].resource_type, stack.events[-1].resource_status) == (
            STACK_TYPE, "DELETE_COMPLETE"):
        stack.events.pop()  # moto's, when only a type it drops failed
    self.stacks[stack.stack_id] = stack
    self.deleted_stacks.pop(stack.stack_id, None)
    self.exports.update({export.name: export for export in exports})
    _keep_only_remaining(stack, keep=set(op.failures))  # a type moto drops stays listed if its delete failed
    _set_status(stack, "DELETE_FAILED", _reason("delete", op.failures))
    return None


@contextlib.contextmanager
def _operation(op: StackOperation) -> Iterator[StackOperation]:
    token = _OPERATION.set(op)
    try:
        yield op
    finally:
        _OPERATION.reset(token)


def _current(resource_map: Any) -> StackOperation | None:
    """The operation of this thread if it is on this resource map's stack (a nested stack has its own)."""
    op = _OPERATION.get()
    if op is None:
        return None
    stack = op.bind(resource_map)
    return op if stack is not None and stack.stack_id == resource_map.stack_id else None


@dataclass
class _Saved:
    """What an update changes on the stack, to put back on rollback."""
    template: Any
    template_dict: Any
    resource_template: Any
    input_parameters: Any
    parameters: Any
    role_arn: str | None
    tags: Any

    @classmethod
    def of(cls, stack: Any) -> "_Saved":
        resource_map = stack.resource_map
        return cls(stack.template, stack.template_dict, resource_map._template, resource_map.input_parameters,
                   stack.parameters, stack.role_arn, stack.tags)


def _settle(op: StackOperation, exc: Exception) -> bool:
    """Whether the exception is a resource's failure (then each failed resource has its event)."""
    for logical_id, (resource_type, verb, reason) in op.errors.items():
        if logical_id not in op.failures:
            op.failures[logical_id] = (verb, reason)
            _resource_event(op.stack, logical_id, resource_type, f"{verb.upper()}_FAILED", reason)
    if not op.failures:
        return False
    logger.info("stack %s: %s failed: %s", op.stack.name, op.kind, "; ".join(r for _, r in op.failures.values()))
    return True


def _reason(verb: str, failures: dict[str, tuple[str, str]]) -> str:
    """CloudFormation's stack reason: "The following resource(s) failed to create: [A, B]. " (one per verb)."""
    by_verb: dict[str, list[str]] = {}
    for logical_id, (failed_verb, _) in failures.items():
        by_verb.setdefault(failed_verb, []).append(logical_id)
    if not by_verb:
        by_verb[verb] = []
    return " ".join(f"The following resource(s) failed to {v}: [{', '.join(ids)}]." for v, ids in by_verb.items()) + " "


def _roll_back_create(op: StackOperation, stack: Any) -> None:
    """ROLLBACK_IN_PROGRESS, the created resources deleted (newest first), ROLLBACK_COMPLETE or _FAILED."""
    from moto.cloudformation.parsing import OutputMap

    backend = op.backend
    _set_status(stack, "ROLLBACK_IN_PROGRESS", _reason("create", op.failures) + "Rollback requested by user.")
    op.rolling_back = True
    resource_map = stack.resource_map
    for logical_id in reversed(op.created):
        resource = resource_map._parsed_resources.get(logical_id)
        if resource is None:
            continue
        try:
            resource_map._delete_resource(resource, resource_map._resource_json_map[logical_id])
        except Exception:  # recorded as the resource's DELETE_FAILED (_service_error)
            logger.info("stack %s: rollback could not delete %s", stack.name, logical_id)
        if logical_id not in op.rollback_failures:
            resource_map._parsed_resources.pop(logical_id, None)
    for name in [n for n, e in backend.exports.items() if e.exporting_stack_id == stack.stack_id]:
        del backend.exports[name]
    _keep_only_remaining(stack)
    stack.output_map = OutputMap(resource_map, {}, stack.stack_id)
    if op.rollback_failures:
        failed = {logical_id: ("delete", reason) for logical_id, reason in op.rollback_failures.items()}
        _set_status(stack, "ROLLBACK_FAILED", _reason("delete", failed))
    else:
        _set_status(stack, "ROLLBACK_COMPLETE", None)


def _roll_back_update(op: StackOperation, stack: Any, saved: _Saved) -> None:
    """UPDATE_ROLLBACK_IN_PROGRESS, the previous template re-applied to what the update touched, then
    UPDATE_ROLLBACK_COMPLETE (or _FAILED when a rollback step fails)."""
    _set_status(stack, "UPDATE_ROLLBACK_IN_PROGRESS", _reason("update", op.failures))
    op.rolling_back = True
    resource_map = stack.resource_map
    resource_map.input_parameters = saved.input_parameters
    try:
        resource_map.update(saved.resource_template, None)
    except Exception as exc:  # a rollback step moto could not do: reported, as AWS reports it
        logger.exception("stack %s: rollback failed", stack.name)
        op.rollback_failures.setdefault("?", str(exc))
    stack.template, stack.template_dict = saved.template, saved.template_dict
    stack.parameters, stack.role_arn, stack.tags = saved.parameters, saved.role_arn, saved.tags
    stack.output_map = stack._create_output_map()
    if op.rollback_failures:
        failed = {logical_id: ("update", reason) for logical_id, reason in op.rollback_failures.items()}
        _set_status(stack, "UPDATE_ROLLBACK_FAILED", _reason("update", failed))
    else:
        _stack_event(stack, "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS", None)
        _set_status(stack, "UPDATE_ROLLBACK_COMPLETE", None)


def _keep_only_remaining(stack: Any, keep: Iterable[str] = ()) -> None:
    """The stack lists only what still exists (moto's map creates any listed resource it lacks, on access)."""
    resource_map, kept = stack.resource_map, set(keep)
    resource_map._resource_json_map = {logical_id: resource for logical_id, resource
                                       in resource_map._resource_json_map.items()
                                       if logical_id in resource_map._parsed_resources or logical_id in kept}


# -- events --------------------------------------------------------------------------------------------------
def _set_status(stack: Any, status: str, reason: str | None) -> None:
    stack.status, stack.status_reason = status, reason
    _stack_event(stack, status, reason)


def _stack_event(stack: Any, status: str, reason: str | None) -> None:
    stack._add_stack_event(status, resource_status_reason=reason)


def _stack_event_first(stack: Any) -> None:
    """The stack's CREATE_IN_PROGRESS first: moto adds it after computing the exports, which creates the
    resources they name (its map is lazy)."""
    found = [e for e in stack.events if e.resource_type == STACK_TYPE and e.resource_status == "CREATE_IN_PROGRESS"]
    if not found:
        stack._add_stack_event("CREATE_IN_PROGRESS", resource_status_reason="User Initiated")
        found = [stack.events[-1]]
    stack.events.remove(found[0])
    stack.events.insert(0, found[0])


def _resource_event(stack: Any, logical_id: str, resource_type: str, status: str, reason: str | None = None,
                    physical_id: str = "") -> None:
    from moto.cloudformation.models import Event

    if stack is None:
        return
    stack.events.append(Event(stack_id=stack.stack_id, stack_name=stack.name, logical_resource_id=logical_id,
                              physical_resource_id=physical_id, resource_type=resource_type,
                              resource_status=status, resource_status_reason=reason, resource_properties=None))


def _physical_id(resource: Any) -> str:
    try:
        return str(resource.physical_resource_id or "")
    except Exception:  # some moto models compute it from state they may not have
        return ""


# -- properties as deployed -----------------------------------------------------------------------------------
def _resolve(op: StackOperation, resource_map: Any, logical_id: str) -> dict[str, Any]:
    """A resource's properties with intrinsics resolved, never creating anything (the raw ones if it would)."""
    from moto.cloudformation.parsing import clean_json

    raw = resource_map._resource_json_map.get(logical_id, {}).get("Properties", {}) or {}
    op.resolving = True
    try:
        return dict(clean_json(copy.deepcopy(raw), resource_map))
    except Exception:  # _WouldCreate, or an intrinsic moto cannot resolve now
        return dict(raw)
    finally:
        op.resolving = False


def _resolved_all(op: StackOperation, resource_map: Any) -> dict[str, dict[str, Any]]:
    """Every deployed resource's properties (those moto made, and those of types it drops)."""
    deployed = [logical_id for logical_id in list(resource_map._resource_json_map)
                if not isinstance(resource_map._parsed_resources.get(logical_id), (str, type(None)))]
    deployed += [logical_id for logical_id, _ in _dropped(resource_map)]
    return {logical_id: _resolve(op, resource_map, logical_id) for logical_id in deployed}


def _dropped(resource_map: Any) -> list[tuple[str, str]]:
    """(logical id, type) of the resources whose type moto has no model for and whose condition holds."""
    from moto.cloudformation.parsing import resource_class_from_type

    found = []
    for logical_id, resource in list(resource_map._resource_json_map.items()):
        condition = resource.get("Condition")
        if resource_class_from_type(resource.get("Type", "")) is None and (
                not condition or resource_map.lazy_condition_map[condition]):
            found.append((logical_id, resource["Type"]))
    return found


# -- the resource hooks ------------------------------------------------------------------------------------------
def _parse_and_create_resource(logical_id: str, resource_json: dict[str, Any], resources_map: Any,
                               account_id: str, region_name: str) -> Any:
    """moto 5.2.5's parsing.parse_and_create_resource, with the handler check between naming and creating."""
    from moto.cloudformation import parsing

    op = _current(resources_map)
    if op is None:
        return _installed["parse_and_create_resource"](logical_id, resource_json, resources_map, account_id,
                                                       region_name)
    if op.resolving:
        raise _WouldCreate(logical_id)
    condition = resource_json.get("Condition")
    if condition and not resources_map.lazy_condition_map[condition]:
        return None
    if parsing.resource_class_from_type(resource_json["Type"]) is None:
        _check_dropped(op, logical_id, resource_json, resources_map, account_id, region_name)
    parsed = parsing.parse_resource_and_generate_name(logical_id, resource_json, resources_map)
    if not parsed:
        return None
    resource_class, resolved, name = parsed
    resource_type = resource_json["Type"]
    properties = resolved.get("Properties", {}) or {}
    _resource_event(op.stack, logical_id, resource_type, "CREATE_IN_PROGRESS")
    if not _allowed(op, resources_map, logical_id, resource_type, hp.Operation.CREATE, properties, name,
                    account_id, region_name):
        return None  # a rollback step, denied: recorded
    try:
        resource = resource_class.create_from_cloudformation_json(
            name, resolved, account_id, region_name, LogicalId=logical_id, StackId=resources_map.stack_id,
            ResourceType=resource_type)
    except Exception as exc:
        _service_error(op, logical_id, resource_type, "create", exc)
        raise
    resource.cf_resource_type, resource.logical_resource_id = resource_type, logical_id
    op.created.append(logical_id)
    op.properties[logical_id] = properties
    _resource_event(op.stack, logical_id, resource_type, "CREATE_COMPLETE", physical_id=_physical_id(resource))
    return resource


def _check_dropped(op: StackOperation, logical_id: str, resource_json: dict[str, Any], resources_map: Any,
                   account_id: str, region_name: str) -> None:
    """A type moto has no model for (it skips it) is still checked: on AWS its handler runs."""
    from moto.cloudformation.parsing import clean_json

    properties = dict(clean_json(copy.deepcopy(resource_json.get("Properties", {}) or {}), resources_map))
    try:
        _allowed(op, resources_map, logical_id, resource_json["Type"], hp.Operation.CREATE, properties, "",
                 account_id, region_name)
    except ResourceFailed:
        _resource_event(op.stack, logical_id, resource_json["Type"], "CREATE_IN_PROGRESS")
        op.stack.events.append(op.stack.events.pop(-2))  # IN_PROGRESS before the FAILED _allowed added
        raise


def _parse_and_update_resource(logical_id: str, resource_json: dict[str, Any], resources_map: Any,
                               account_id: str, region_name: str) -> Any:
    """moto 5.2.5's parsing.parse_and_update_resource, with the handler check before the update."""
    from moto.cloudformation import parsing

    op = _current(resources_map)
    if op is None:
        return _installed["parse_and_update_resource"](logical_id, resource_json, resources_map, account_id,
                                                       region_name)
    if parsing.resource_class_from_type(resource_json["Type"]) is None:  # moto drops it: checked only
        if logical_id in op.failures and not op.rolling_back:
            raise ResourceFailed(logical_id, op.failures[logical_id][1])
        if not op.rolling_back:
            properties = dict(parsing.clean_json(copy.deepcopy(resource_json.get("Properties", {}) or {}),
                                                 resources_map))
            _allowed(op, resources_map, logical_id, resource_json["Type"], hp.Operation.UPDATE, properties, "",
                     account_id, region_name)
            op.properties[logical_id] = properties
        return None
    original = resources_map[logical_id]
    if op.rolling_back and logical_id not in op.updated:
        return original  # the failed update never changed it: nothing to roll back
    if logical_id in op.failures and not op.rolling_back:
        raise ResourceFailed(logical_id, op.failures[logical_id][1])  # moto retries a failed update: same answer
    parsed = parsing.parse_resource_and_generate_name(logical_id, resource_json, resources_map)
    if not parsed:
        return None
    resource_class, resolved, name = parsed
    if hasattr(resource_class.update_from_cloudformation_json, "__isabstractmethod__"):
        return None
    resource_type = resource_json["Type"]
    properties = resolved.get("Properties", {}) or {}
    if (logical_id, "update") not in op.started:
        op.started.add((logical_id, "update"))
        _resource_event(op.stack, logical_id, resource_type, "UPDATE_IN_PROGRESS", physical_id=_physical_id(original))
    if not _allowed(op, resources_map, logical_id, resource_type, hp.Operation.UPDATE, properties, name,
                    account_id, region_name, physical=_physical_id(original)):
        return original
    try:
        updated = resource_class.update_from_cloudformation_json(
            original_resource=original, new_resource_name=name, cloudformation_json=resolved,
            account_id=account_id, region_name=region_name)
    except Exception as exc:
        _service_error(op, logical_id, resource_type, "update", exc)
        raise
    op.errors.pop(logical_id, None)
    updated.cf_resource_type, updated.logical_resource_id = resource_type, logical_id
    op.updated.add(logical_id)
    op.properties[logical_id] = properties
    _resource_event(op.stack, logical_id, resource_type, "UPDATE_COMPLETE", physical_id=_physical_id(updated))
    return updated


def _delete_resource(self: Any, parsed_resource: Any, resource_json: dict[str, Any]) -> None:
    """moto's ResourceMap._delete_resource, after the delete handler's check."""
    op = _current(self)
    if op is None:
        return _installed["_delete_resource"](self, parsed_resource, resource_json)
    logical_id = getattr(parsed_resource, "logical_resource_id", "")
    resource_type = resource_json.get("Type", "")
    if logical_id in op.failures and op.kind == "delete":
        raise ResourceFailed(logical_id, op.failures[logical_id][1])  # moto retries: same answer
    physical = _physical_id(parsed_resource)
    if (logical_id, "delete") not in op.started or op.rolling_back:
        op.started.add((logical_id, "delete"))
        _resource_event(op.stack, logical_id, resource_type, "DELETE_IN_PROGRESS", physical_id=physical)
    properties = op.properties.get(logical_id) or dict(resource_json.get("Properties", {}) or {})
    if not _allowed(op, self, logical_id, resource_type, hp.Operation.DELETE, properties, physical,
                    self._account_id, self._region_name, physical=physical):
        return None  # kept: an update's removal or a rollback step, denied and recorded
    try:
        _installed["_delete_resource"](self, parsed_resource, resource_json)
    except Exception as exc:
        _service_error(op, logical_id, resource_type, "delete", exc)
        raise
    op.errors.pop(logical_id, None)
    _resource_event(op.stack, logical_id, resource_type, "DELETE_COMPLETE", physical_id=physical)
    if op.kind == "update":  # moto keeps removed resources in its map; a later Add would find the deleted one
        self._parsed_resources.pop(logical_id, None)
    return None


def _service_error(op: StackOperation, logical_id: str, resource_type: str, verb: str, exc: Exception) -> None:
    """A handler's service refused (or the stand-in failed): the reason AWS would show, settled at the end
    (moto retries updates and deletes; one that then succeeds did not fail)."""
    reason = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    if op.rolling_back:
        op.rollback_failures[logical_id] = reason
        _resource_event(op.stack, logical_id, resource_type, f"{verb.upper()}_FAILED", reason)
        return
    if not isinstance(exc, ResourceFailed):
        logger.info("stack resource %s (%s) %s failed: %s", logical_id, resource_type, verb, reason)
        op.errors[logical_id] = (resource_type, verb, reason)


# -- the check -------------------------------------------------------------------------------------------------
def _allowed(op: StackOperation, resource_map: Any, logical_id: str, resource_type: str, operation: hp.Operation,
             properties: dict[str, Any], name: str, account: str, region: str, physical: str = "") -> bool:
    """Record the handler's checks; True to go on. A denial fails the resource (raises ResourceFailed),
    except an update's removal and rollback steps, which are recorded and skipped (False)."""
    from mlops_local.access_log import Access
    from mlops_local.iam import enforcement

    runtime = _runtime()
    if op.principal is None or runtime is None:
        return True
    previous = op.properties.get(logical_id) if operation is hp.Operation.UPDATE else None
    mapped = authorization(resource_type, operation, properties, previous, bool(op.stack.tags), name, physical,
                           account, region)
    verb = operation.value
    access = Access(time.time(), op.principal, "cloudformation", mapped.operation, mapped)
    enforce = runtime.aws.gateway.enforce
    decision = enforcement.decide(access, account, region) if enforce else None
    runtime.access_log.add(replace(access, decided=decision))
    if decision is None or not decision.denied:
        return True
    reason = failure_reason(mapped, decision)
    _resource_event(op.stack, logical_id, resource_type, f"{verb.upper()}_FAILED", reason)
    if op.rolling_back:
        op.rollback_failures[logical_id] = reason
        return False
    if op.kind == "update" and operation is hp.Operation.DELETE:
        return False  # AWS deletes an update's removals in the cleanup, whose failures do not fail the update
    op.failures[logical_id] = (verb, reason)
    raise ResourceFailed(logical_id, reason)
