"""Action providers of the local pipeline engine: what each CodePipeline action type does here.

One module per provider; `PROVIDERS` maps an action type (category, owner, provider) to the
function that runs it. A provider takes an `ActionContext` and returns an `ActionResult` or raises
`ActionFailed`; the scheduler owns ordering, variables, state and the job API.
"""
from __future__ import annotations

from typing import Callable

from mlops_local.codepipeline.actions.cloudformation import deploy_cloudformation
from mlops_local.codepipeline.actions.codebuild import build_codebuild
from mlops_local.codepipeline.actions.codecommit import source_codecommit
from mlops_local.codepipeline.actions.context import (MAX_MESSAGE, MAX_SUMMARY,
                                                      ActionAbandoned, ActionContext, ActionFailed, ActionResult,
                                                      Approval, ArtifactRef, SourceProvider, new_artifact_key)
from mlops_local.codepipeline.actions.lambda_invoke import invoke_lambda
from mlops_local.codepipeline.actions.manual_approval import manual_approval
from mlops_local.codepipeline.actions.s3_source import source_s3

Provider = Callable[[ActionContext], ActionResult]

PROVIDERS: dict[tuple[str, str, str], Provider] = {
    ("Source", "AWS", "CodeCommit"): source_codecommit,
    ("Source", "AWS", "S3"): source_s3,
    ("Build", "AWS", "CodeBuild"): build_codebuild,
    ("Test", "AWS", "CodeBuild"): build_codebuild,
    ("Deploy", "AWS", "CloudFormation"): deploy_cloudformation,
    ("Invoke", "AWS", "Lambda"): invoke_lambda,
    ("Approval", "AWS", "Manual"): manual_approval,
}

__all__ = ["MAX_MESSAGE", "MAX_SUMMARY", "PROVIDERS", "ActionAbandoned", "ActionContext",
           "ActionFailed", "ActionResult", "Approval", "ArtifactRef", "Provider", "SourceProvider", "new_artifact_key"]
