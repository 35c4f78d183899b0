"""A deployed endpoint's production variants: desired weights and capacities, and what an update retains.

- UpdateEndpointWeightsAndCapacities (SageMaker API Reference; what Application Auto Scaling calls to scale a
  variant) sets a variant's DesiredWeight and/or DesiredInstanceCount (API_DesiredWeightAndCapacity); the
  endpoint is Updating until the Current* values reach them. The refusals' texts are moto's (moto/sagemaker
  models.py, update_endpoint_weights_and_capacities), as AWS words them is not documented.
- UpdateEndpoint with RetainAllVariantProperties true keeps the variants' current instance counts and weights
  instead of the new config's InitialInstanceCount / InitialVariantWeight; ExcludeRetainedVariantProperties
  names the ones the new config overrides after all (API_UpdateEndpoint, API_VariantProperty; the
  CloudFormation AWS::SageMaker::Endpoint properties of the same names pass them on).
"""
from __future__ import annotations

from typing import Any

COUNT, WEIGHT = "DesiredInstanceCount", "DesiredWeight"
RETAINABLE = (COUNT, WEIGHT)  # VariantPropertyType's DataCaptureConfig is "Not currently supported"
CURRENT = {COUNT: "CurrentInstanceCount", WEIGHT: "CurrentWeight"}


class InvalidVariants(ValueError):
    """A request the stand-in refuses (the message is the ValidationException's)."""


def desired(variants: list[dict[str, Any]], wanted: list[dict[str, Any]], config: str) -> list[dict[str, Any]]:
    """The variants with the request's DesiredWeight / DesiredInstanceCount set (Current* unchanged)."""
    names: list[str] = []
    for entry in wanted:
        name = entry.get("VariantName", "")
        if name in names:
            raise InvalidVariants(f'The variant name "{name}" was non-unique within the request.')
        names.append(name)
    missing = [n for n in names if n not in {v["VariantName"] for v in variants}]
    if missing:
        raise InvalidVariants(f'The variant name(s) "{", ".join(missing)}" is/are not present within endpoint '
                              f'configuration "{config}".')
    by_name = {e["VariantName"]: e for e in wanted}
    changed = []
    for variant in variants:
        entry = by_name.get(variant["VariantName"], {})
        changed.append({**variant, **{key: entry[key] for key in RETAINABLE if key in entry}})
    return changed


def reached(variants: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The variants once the scaling completed: Current* = Desired*."""
    return [{**v, **{CURRENT[key]: v[key] for key in RETAINABLE if key in v}} for v in variants]


def retained_properties(retain_all: Any, excluded: list[dict[str, Any]] | None) -> frozenset[str]:
    """The variant properties an update keeps: none unless RetainAllVariantProperties (CloudFormation may
    pass "true" as a string), less ExcludeRetainedVariantProperties."""
    if str(retain_all).lower() != "true":
        return frozenset()
    return frozenset(RETAINABLE) - {e.get("VariantPropertyType") for e in excluded or []}


def retain(old: list[dict[str, Any]], new: list[dict[str, Any]], keep: frozenset[str]) -> list[dict[str, Any]]:
    """The new config's variants, with the `keep` properties (and their Current* values) of the variant of the
    same name in service before."""
    before = {v["VariantName"]: v for v in old}
    kept = []
    for variant in new:
        previous = before.get(variant["VariantName"], {})
        carried = {k: previous[k] for key in keep for k in (key, CURRENT[key]) if k in previous and key in variant}
        kept.append({**variant, **carried})
    return kept
