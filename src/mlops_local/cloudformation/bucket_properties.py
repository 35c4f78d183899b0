"""The AWS::S3::Bucket properties moto's CloudFormation drops, put on the bucket as CloudFormation does.

moto 5.2.5's `FakeBucket.create_from_cloudformation_json` / `update_from_cloudformation_json` apply
BucketEncryption and Tags only, so a stack's bucket was unversioned, without lifecycle rules, EventBridge
notifications, public access block or ownership controls, while on AWS it has what the template says
(and the S3 source action needs a versioned bucket). `install()` wraps both methods: after moto's own,
each property below is converted from its CloudFormation shape (CloudFormation User Guide,
"AWS::S3::Bucket" and its property types; the registry schema cfn-lint ships, read by
handler_permissions.schema("AWS::S3::Bucket")) to the S3 API's and put through moto's S3
backend, as the resource handler calls PutBucketVersioning, PutBucketLifecycleConfiguration,
PutBucketNotificationConfiguration, PutPublicAccessBlock and PutBucketOwnershipControls. The wrapper runs
inside every create, update, replacement and rollback step (stack_permissions checks the handler
permissions around it), with the properties moto resolved. On update, a removed LifecycleConfiguration,
NotificationConfiguration, PublicAccessBlockConfiguration or OwnershipControls is removed from the bucket;
a removed VersioningConfiguration leaves the bucket's versioning as it is (a versioned bucket can only be
suspended, never unversioned: S3 User Guide, "Using versioning in S3 buckets").

Not applied (moto keeps them but the pipeline's templates use none; listed so nobody relies on them):
Queue/Topic/LambdaConfigurations of NotificationConfiguration, CorsConfiguration, LoggingConfiguration,
WebsiteConfiguration, ReplicationConfiguration, ObjectLockConfiguration, AccelerateConfiguration,
analytics, inventory, metrics and intelligent-tiering configurations.
"""
from __future__ import annotations

import functools
import logging
import threading
from typing import Any, Callable, Mapping

from mlops_local.moto_access import backend

logger = logging.getLogger(__name__)

COMPLETE = ("CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE")  # stacks whose buckets exist
_install_lock = threading.Lock()
_installed: dict[str, Any] = {}  # moto's original methods, once wrapped


def _flag(value: Any) -> str:
    """A CloudFormation boolean (YAML true or the string "true") as S3's XML carries it."""
    return "true" if str(value).lower() == "true" else "false"


def _text(value: Any) -> str:
    return str(value)


# -- CloudFormation shape -> S3 API shape (as moto's S3 responses parse the XML body) ------------------------
def lifecycle_rule(rule: Mapping[str, Any]) -> dict[str, Any]:
    """One AWS::S3::Bucket Rule as a LifecycleRule of PutBucketLifecycleConfiguration.

    CloudFormation's Prefix, TagFilters and ObjectSize* become the rule's Filter (one condition as is,
    several under And); ExpirationInDays/ExpirationDate/ExpiredObjectDeleteMarker become Expiration;
    Transition(s) and NoncurrentVersionTransition(s) (singular forms are the deprecated spellings) lists.
    """
    conditions: dict[str, Any] = {}
    if "Prefix" in rule:
        conditions["Prefix"] = _text(rule["Prefix"])
    tags = [{"Key": _text(t["Key"]), "Value": _text(t.get("Value", ""))} for t in rule.get("TagFilters") or []]
    for size in ("ObjectSizeGreaterThan", "ObjectSizeLessThan"):
        if size in rule:
            conditions[size] = _text(rule[size])
    if len(conditions) + len(tags) > 1:
        and_filter: dict[str, Any] = dict(conditions)
        if tags:
            and_filter["Tag"] = tags
        rule_filter: dict[str, Any] = {"And": and_filter}
    elif tags:
        rule_filter = {"Tag": tags[0]}
    else:
        rule_filter = conditions or {"Prefix": ""}  # no condition: the rule applies to every object
    api: dict[str, Any] = {"Status": _text(rule["Status"]), "Filter": rule_filter}
    if "Id" in rule:
        api["ID"] = _text(rule["Id"])
    expiration = {api_key: convert(rule[cfn_key]) for cfn_key, api_key, convert in (
        ("ExpirationInDays", "Days", _text), ("ExpirationDate", "Date", _text),
        ("ExpiredObjectDeleteMarker", "ExpiredObjectDeleteMarker", _flag)) if cfn_key in rule}
    if expiration:
        api["Expiration"] = expiration
    transitions = list(rule.get("Transitions") or []) + ([rule["Transition"]] if "Transition" in rule else [])
    if transitions:
        api["Transition"] = [{api_key: _text(t[cfn_key]) for cfn_key, api_key in (
            ("TransitionInDays", "Days"), ("TransitionDate", "Date"), ("StorageClass", "StorageClass"))
            if cfn_key in t} for t in transitions]
    noncurrent = list(rule.get("NoncurrentVersionTransitions") or []) + (
        [rule["NoncurrentVersionTransition"]] if "NoncurrentVersionTransition" in rule else [])
    if noncurrent:
        api["NoncurrentVersionTransition"] = [{api_key: _text(t[cfn_key]) for cfn_key, api_key in (
            ("TransitionInDays", "NoncurrentDays"), ("StorageClass", "StorageClass"),
            ("NewerNoncurrentVersions", "NewerNoncurrentVersions")) if cfn_key in t} for t in noncurrent]
    if "NoncurrentVersionExpiration" in rule:
        api["NoncurrentVersionExpiration"] = {key: _text(value)
                                              for key, value in rule["NoncurrentVersionExpiration"].items()}
    elif "NoncurrentVersionExpirationInDays" in rule:
        api["NoncurrentVersionExpiration"] = {"NoncurrentDays": _text(rule["NoncurrentVersionExpirationInDays"])}
    if "AbortIncompleteMultipartUpload" in rule:
        api["AbortIncompleteMultipartUpload"] = {
            "DaysAfterInitiation": _text(rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"])}
    return api


def notification(config: Mapping[str, Any]) -> dict[str, Any]:
    """NotificationConfiguration as moto keeps it: EventBridgeConfiguration is an empty element when on."""
    unapplied = sorted(k for k in config if k != "EventBridgeConfiguration")
    if unapplied:
        logger.warning("NotificationConfiguration %s: not applied on the stand-in", ", ".join(unapplied))
    bridge = config.get("EventBridgeConfiguration") or {}
    return {"EventBridgeConfiguration": {}} if _flag(bridge.get("EventBridgeEnabled")) == "true" else {}


def public_access_block(config: Mapping[str, Any]) -> dict[str, str]:
    """PublicAccessBlockConfiguration: a setting left out is false (PutPublicAccessBlock)."""
    return {key: _flag(config.get(key)) for key in (
        "BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")}


# -- applying them -------------------------------------------------------------------------------------------
def apply(bucket_name: str, properties: Mapping[str, Any], account_id: str, region_name: str,
          updating: bool = False) -> None:
    """Put the resolved properties on moto's bucket; `updating` removes the ones the template dropped."""
    s3 = backend("s3", account_id, region_name)
    if "VersioningConfiguration" in properties:
        s3.put_bucket_versioning(bucket_name, _text(properties["VersioningConfiguration"]["Status"]))
    if "LifecycleConfiguration" in properties:
        rules = [lifecycle_rule(r) for r in properties["LifecycleConfiguration"].get("Rules") or []]
        s3.put_bucket_lifecycle_configuration(bucket_name, rules)
    elif updating:
        s3.delete_bucket_lifecycle(bucket_name)
    if "NotificationConfiguration" in properties or updating:
        s3.put_bucket_notification_configuration(
            bucket_name, notification(properties.get("NotificationConfiguration") or {}))
    if "PublicAccessBlockConfiguration" in properties:
        s3.put_public_access_block(bucket_name, public_access_block(properties["PublicAccessBlockConfiguration"]))
    elif updating:
        s3.delete_public_access_block(bucket_name)
    rules = (properties.get("OwnershipControls") or {}).get("Rules") or []
    if rules:
        s3.put_bucket_ownership_controls(bucket_name, _text(rules[0]["ObjectOwnership"]))  # one rule at most
    elif updating:
        s3.delete_bucket_ownership_controls(bucket_name)


def install() -> None:
    """Wrap moto's FakeBucket create/update (once per process) so every stack step applies the properties."""
    from moto.s3.models import FakeBucket

    with _install_lock:
        if _installed:
            return
        _installed["create"] = FakeBucket.create_from_cloudformation_json
        _installed["update"] = FakeBucket.update_from_cloudformation_json
        FakeBucket.create_from_cloudformation_json = classmethod(_wrap(_installed["create"], False))  # type: ignore
        FakeBucket.update_from_cloudformation_json = classmethod(_wrap(_installed["update"], True))  # type: ignore


def _wrap(original: Callable[..., Any], updating: bool) -> Callable[..., Any]:
    @functools.wraps(original)
    def wrapper(cls: Any, *args: Any, **kwargs: Any) -> Any:
        bucket = original(*args, **kwargs)  # bound to FakeBucket already
        names = ("resource_name", "cloudformation_json", "account_id", "region_name") if not updating else (
            "original_resource", "new_resource_name", "cloudformation_json", "account_id", "region_name")
        call = dict(zip(names, args), **kwargs)
        apply(bucket.name, call["cloudformation_json"].get("Properties") or {}, call["account_id"],
              call["region_name"], updating=updating)
        return bucket
    return wrapper


def apply_stack_buckets(account_id: str, region: str) -> list[str]:
    """Apply the properties of every deployed stack's AWS::S3::Bucket again (idempotent); returns the buckets.

    The wrapped create/update already did; this catches a bucket made before `install()` ran."""
    from moto.cloudformation.parsing import clean_json

    s3 = backend("s3", account_id, region)
    applied = []
    for stack in list(backend("cloudformation", account_id, region).stacks.values()):
        if stack.status not in COMPLETE:
            continue
        for logical_id, resource in (stack.template_dict.get("Resources") or {}).items():
            deployed = stack.resource_map._parsed_resources.get(logical_id)
            if resource.get("Type") != "AWS::S3::Bucket" or getattr(deployed, "name", None) not in s3.buckets:
                continue
            properties = clean_json(resource.get("Properties") or {}, stack.resource_map)
            apply(deployed.name, properties, account_id, region)
            applied.append(deployed.name)
    return applied
