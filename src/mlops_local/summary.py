"""summary.json from what the AWS APIs say about a pipeline execution (docs/ARCHITECTURE.md §4).

Everything here is read through the public APIs (CodePipeline, S3, SageMaker, Glue) of whatever
endpoint the clients point at, so the same code summarises a run on AWS and one on the stand-in:
the threshold is the execution's resolved QualityThreshold variable, and the decision is the one
the execution's model package carries in the Model Registry. Champion vs challenger: the champion's
metrics come from evaluation.json (scored on the same test split), the tolerance and the decision's
reason from the package's metadata (else the evaluation's exported variables).
"""
from __future__ import annotations

import io
import json
import posixpath
import tarfile
from pathlib import Path
from typing import Any, Callable, Mapping

from mlops_local.access_report import access_summary, render_access  # noqa: F401  (access_summary: pipeline_run)
from mlops_local.s3_staging import split_s3_uri

THRESHOLD_VARIABLE = "QualityThreshold"
# Model package CustomerMetadataProperties the job workers write (lambdas.sagemaker_jobs).
EXECUTION_KEY, DECISION_KEY = "ExecutionId", "Decision"
TOLERANCE_KEY, REASON_KEY = "TolerancePercent", "DecisionReason"
DECISIONS = {"Approved": "APPROVED", "Rejected": "REJECTED"}  # by ModelApprovalStatus
LOOKBACK = 50  # newest packages of the group searched for this execution's
METRICS_FILE = "metrics.json"  # what the trainer writes to SM_OUTPUT_DATA_DIR (training.train.run)
LOSS_PLOT = "loss.png"
EVALUATION_PLOT = "evaluation.png"  # training.evaluate writes it next to evaluation.json
# Per environment: the stage, the deploy action's namespace (stack outputs), the deploy config's namespace,
# the endpoint test action and its namespace (templates/pipeline.yaml).
ENVIRONMENTS = {"dev": ("Deployment", "Endpoint", "DeployConfig", "TestEndpoint", "EndpointTest"),
                "prod": ("Production", "ProdEndpoint", "ProdDeployConfig", "TestProdEndpoint", "ProdEndpointTest")}
EXPIRED_PREFIX = "Approval expired"  # the engine's wording (codepipeline.actions.manual_approval.timeout_message)
ACCESS_IN_PROCESS_ONLY = ("the access log is recorded by the stand-in's gateway during `mlops-local run`; "
                          "no public API answers it")


def _seconds(start: Any, end: Any) -> float:
    return max((end - start).total_seconds(), 0.0) if start and end else 0.0


def action_message(detail: Mapping[str, Any]) -> str:
    result = (detail.get("output") or {}).get("executionResult") or {}
    error = result.get("errorDetails") or {}
    return error.get("message") or result.get("externalExecutionSummary") or ""


def collect(codepipeline: Any, pipeline: str, execution_id: str) -> dict[str, Any]:
    """Execution, its action executions (oldest first) and the pipeline's stage order."""
    execution = codepipeline.get_pipeline_execution(pipelineName=pipeline,
                                                    pipelineExecutionId=execution_id)["pipelineExecution"]
    pages = codepipeline.get_paginator("list_action_executions").paginate(
        pipelineName=pipeline, filter={"pipelineExecutionId": execution_id})
    details: list[dict[str, Any]] = [d for page in pages for d in page["actionExecutionDetails"]]
    details.sort(key=lambda d: d["startTime"])
    definition = codepipeline.get_pipeline(name=pipeline)["pipeline"]
    # GetPipelineState: who answered an approval (lastUpdatedBy), when ListActionExecutions has no updatedBy.
    state = codepipeline.get_pipeline_state(name=pipeline)
    return {"execution": execution, "actions": details, "state": state,
            "stages": [(s["name"], [a["name"] for a in s["actions"]]) for s in definition["stages"]]}


def variables(actions: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """Output variables by namespace, from the latest execution of each action."""
    found: dict[str, dict[str, str]] = {}
    for detail in actions:
        namespace = (detail.get("input") or {}).get("namespace")
        if namespace:
            found[namespace] = dict((detail.get("output") or {}).get("outputVariables") or {})
    return found


def stages(collected: Mapping[str, Any]) -> list[dict[str, Any]]:
    latest = {(d["stageName"], d["actionName"]): d for d in collected["actions"]}
    result = []
    for stage, names in collected["stages"]:
        actions = []
        for name in names:
            detail = latest.get((stage, name))
            if detail is None:
                continue
            actions.append({"name": name, "status": detail["status"],
                            "seconds": round(_seconds(detail.get("startTime"), detail.get("lastUpdateTime")), 3),
                            "message": action_message(detail)})
        details = [latest[(stage, n)] for n in names if (stage, n) in latest]
        if not details:
            result.append({"name": stage, "status": "Skipped", "seconds": 0.0, "actions": []})
            continue
        statuses = {a["status"] for a in actions}
        status = next((s for s in ("Failed", "Stopped", "InProgress") if s in statuses), "Succeeded")
        seconds = _seconds(min(d["startTime"] for d in details), max(d["lastUpdateTime"] for d in details))
        result.append({"name": stage, "status": status, "seconds": round(seconds, 3), "actions": actions})
    return result


def read_bytes(s3: Any, uri: str | None) -> bytes | None:
    try:
        bucket, key = split_s3_uri(uri)
        body: bytes = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        return body
    except Exception:  # missing: the run's status says why
        return None


def read_json(s3: Any, uri: str | None) -> Any:
    try:
        bucket, key = split_s3_uri(uri)
        return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except Exception:  # a missing report is shown as null, the run's status says why
        return None


def threshold(execution: Mapping[str, Any]) -> float | None:
    """The execution's resolved QualityThreshold (GetPipelineExecution's variables), if it has one."""
    for variable in execution.get("variables") or []:
        if variable.get("name") == THRESHOLD_VARIABLE:
            return _float(variable.get("resolvedValue"))
    return None


def model_package(collected: Mapping[str, Any], found: Mapping[str, Mapping[str, str]],
                  sagemaker: Any) -> dict[str, Any] | None:
    """This execution's model package: the one RegisterModel exported, else the one whose metadata
    names the execution in the group the evaluation monitor was given (it records Rejected ones)."""
    arn = found.get("Registry", {}).get("ModelPackageArn")
    if arn:
        described: dict[str, Any] = sagemaker.describe_model_package(ModelPackageName=arn)
        return described
    execution_id = collected["execution"]["pipelineExecutionId"]
    groups = {params["model_package_group"] for params in map(_user_parameters, collected["actions"])
              if params.get("execution_id") == execution_id and isinstance(params.get("model_package_group"), str)}
    for group in sorted(groups):
        page = sagemaker.list_model_packages(ModelPackageGroupName=group, SortBy="CreationTime",
                                             SortOrder="Descending", MaxResults=LOOKBACK)
        for summary in page.get("ModelPackageSummaryList", []):
            described = sagemaker.describe_model_package(ModelPackageName=summary["ModelPackageArn"])
            if (described.get("CustomerMetadataProperties") or {}).get(EXECUTION_KEY) == execution_id:
                return described
    return None


def _user_parameters(detail: Mapping[str, Any]) -> dict[str, Any]:
    """An action execution's resolved UserParameters as JSON, or {} (not a job worker, not JSON)."""
    configuration = (detail.get("input") or {}).get("resolvedConfiguration") or {}
    try:
        params = json.loads(configuration.get("UserParameters") or "{}")
    except ValueError:
        return {}
    return params if isinstance(params, dict) else {}


def decision(package: Mapping[str, Any] | None, found: Mapping[str, Mapping[str, str]]) -> str | None:
    """APPROVED or REJECTED as the registry records it; an approved model whose registration did not
    happen has no package, so then the evaluation's exported Decision; None when nothing was judged."""
    if package is not None:
        recorded = (package.get("CustomerMetadataProperties") or {}).get(DECISION_KEY)
        verdict = recorded or DECISIONS.get(package.get("ModelApprovalStatus", ""))
        if verdict:
            return verdict
    return found.get("Evaluation", {}).get("Decision")


def build_summary(collected: Mapping[str, Any], *, s3: Any, sagemaker: Any, glue: Any, wall_seconds: float,
                  job_times: Callable[[Mapping[str, Mapping[str, str]]], Mapping[str, float]] | None = None,
                  extra_timings: Mapping[str, float] | None = None) -> dict[str, Any]:
    """wall_seconds: the execution's own wall time; extra_timings: e.g. the deploy before it."""
    execution = collected["execution"]
    found = variables(collected["actions"])
    stage_list = stages(collected)
    package = model_package(collected, found, sagemaker)

    evaluation = read_json(s3, found.get("EvaluationJob", {}).get("EvaluationUri"))
    metrics = None
    if evaluation:
        metrics = _metric_values(evaluation)

    etl = found.get("Etl", {})
    quality = None
    if etl:
        quality = {"rows_in": _int(etl.get("RowsIn")), "rows_out": _int(etl.get("RowsOut")),
                   "quarantined": _int(etl.get("Quarantined")), "duplicates": _int(etl.get("Duplicates"))}
        report = read_json(s3, _join(found.get("EtlJob", {}).get("EtlOutputUri"), "data-quality.json"))
        if isinstance(report, dict):  # the ETL's own report: by reason and split sizes
            quality["quarantined_by_reason"] = report.get("quarantined_by_reason")
            quality["splits"] = report.get("splits")

    endpoints = {environment: deployed_endpoint(found, stage_list, sagemaker, *names)
                 for environment, names in ENVIRONMENTS.items()}
    dev = endpoints["dev"] or {}
    endpoint = {"name": dev["name"], "status": dev["status"]} if dev.get("status") else None
    endpoint_test = dev.get("test")

    times = job_times(found) if job_times else {}
    jobs = sum(times.values())
    status = execution["status"]
    failed = next((s for s in stage_list if s["status"] in ("Failed", "Stopped")), None)
    return {
        "pipeline_execution_id": execution["pipelineExecutionId"],
        "mode": "pipeline",
        "status": "Succeeded" if status == "Succeeded" else "Failed",
        "decision": decision(package, found),
        "threshold": threshold(execution),
        "metrics": metrics,
        "champion": champion(evaluation, package, found),
        "stages": stage_list,
        "model_package_arn": found.get("Registry", {}).get("ModelPackageArn"),
        "endpoint": endpoint,            # dev, as before the prod stage existed
        "endpoint_test": endpoint_test,  # dev's
        "endpoints": endpoints,
        "approval": approval(collected),
        "data_quality": quality,
        "timings": {"wall_seconds": round(wall_seconds, 3), "job_seconds": round(jobs, 3),
                    "orchestration_seconds": round(max(wall_seconds - jobs, 0.0), 3),
                    "jobs": {kind: round(seconds, 3) for kind, seconds in times.items()},
                    **{k: round(v, 3) for k, v in (extra_timings or {}).items()}},
        "status_summary": execution.get("statusSummary"),
        "failed_stage": failed["name"] if failed else None,
        "training": training(found, sagemaker=sagemaker, s3=s3),
        "evaluation_plot_uri": _join(_parent(found.get("EvaluationJob", {}).get("EvaluationUri")), EVALUATION_PLOT),
        # Seam: a "logs" entry (each job's CloudWatch group/stream, from cloudwatch_logs) goes here, so
        # report.md can point at `aws logs get-log-events` for the failed action.
    }


def deployed_endpoint(found: Mapping[str, Mapping[str, str]], stage_list: list[dict[str, Any]], sagemaker: Any,
                      stage: str, deploy: str, config: str, test_action: str, test: str) -> dict[str, Any] | None:
    """One environment's endpoint: name and status (DescribeEndpoint), the package it serves, its test;
    None when the execution neither deployed it nor tested it (a REJECTED gate, an older pipeline)."""
    name = found.get(deploy, {}).get("EndpointName") or found.get(config, {}).get("EndpointName")
    endpoint: dict[str, Any] = {"name": name, "status": None, "model_package_arn": None, "test": None}
    if name and deploy in found:
        try:
            described = sagemaker.describe_endpoint(EndpointName=name)
            endpoint["status"] = described["EndpointStatus"]
        except Exception:
            endpoint["status"], described = "NotFound", None
        if described:
            try:
                endpoint["model_package_arn"] = served_package(sagemaker, described)
            except Exception:  # a config or model gone meanwhile (an update in flight): the stack output says
                pass
        # The stack output says what the stack was asked to serve; the endpoint's own model says what it serves.
        endpoint["model_package_arn"] = endpoint["model_package_arn"] or found[deploy].get("ModelPackageArn")
    actions: list[dict[str, Any]] = next((s["actions"] for s in stage_list if s["name"] == stage), [])
    ran = next((a for a in actions if a["name"] == test_action), None)
    if ran:
        values = found.get(test) or {}
        endpoint["test"] = {"passed": ran["status"] == "Succeeded", "rows": _int(values.get("Rows")),
                            "rmse": _float(values.get("SampleRmse")), "p50_ms": _float(values.get("P50Ms")),
                            "p99_ms": _float(values.get("P99Ms")), "message": ran["message"]}
    return endpoint if endpoint["status"] or endpoint["test"] else None


def served_package(sagemaker: Any, endpoint: Mapping[str, Any]) -> str | None:
    """The model package the endpoint's configuration serves: config -> variant's model -> ModelPackageName
    (DescribeEndpointConfig, DescribeModel); the first variant's (a blue/green update shifts whole fleets)."""
    config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    for variant in config.get("ProductionVariants", []):
        model = sagemaker.describe_model(ModelName=variant["ModelName"])
        containers = [model.get("PrimaryContainer") or {}, *(model.get("Containers") or [])]
        package = next((c["ModelPackageName"] for c in containers if c.get("ModelPackageName")), None)
        if package:
            return str(package)
    return None


def approval(collected: Mapping[str, Any]) -> dict[str, Any] | None:
    """The execution's Manual approval (the last one it reached): Approved, Rejected, Expired (its timeout
    passed unanswered), Waiting, or the action's status (Abandoned); who answered it and their summary."""
    detail = next((d for d in reversed(collected["actions"])
                   if ((d.get("input") or {}).get("actionTypeId") or {}).get("category") == "Approval"), None)
    if detail is None:
        return None
    message = action_message(detail)
    by = detail.get("updatedBy") or _answered_by(collected.get("state") or {}, detail)
    status = {"Succeeded": "Approved", "InProgress": "Waiting"}.get(detail["status"], detail["status"])
    if detail["status"] == "Failed":  # answered Rejected, expired, or failed (e.g. its notification was denied)
        status = ("Expired" if message.startswith(EXPIRED_PREFIX) else
                  "Rejected" if message.startswith("Rejected by") else "Failed")
    return {"stage": detail["stageName"], "action": detail["actionName"], "status": status, "summary": message,
            "by": by, "custom_data": _custom_data(detail.get("input") or {})}


def _custom_data(action_input: Mapping[str, Any]) -> str | None:
    """What the reviewer read: the resolved configuration (ListActionExecutions' input.resolvedConfiguration;
    `configuration` keeps the #{...} as the pipeline declares them)."""
    for key in ("resolvedConfiguration", "configuration"):
        if (action_input.get(key) or {}).get("CustomData"):
            return action_input[key]["CustomData"]
    return None


def _answered_by(state: Mapping[str, Any], detail: Mapping[str, Any]) -> str | None:
    """GetPipelineState's lastUpdatedBy of that very action execution (only the latest one is shown)."""
    for stage in state.get("stageStates", []):
        for action in stage.get("actionStates", []):
            latest = action.get("latestExecution") or {}
            if latest.get("actionExecutionId") and latest["actionExecutionId"] == detail.get("actionExecutionId"):
                return latest.get("lastUpdatedBy")
    return None


def _metric_values(report: Mapping[str, Any]) -> dict[str, Any]:
    regression = report.get("regression_metrics") or {}
    return {k: (regression.get(k) or {}).get("value") for k in ("rmse", "mae", "r2")}


def champion(evaluation: Any, package: Mapping[str, Any] | None,
             found: Mapping[str, Mapping[str, str]]) -> dict[str, Any] | None:
    """The champion/challenger comparison: None when nothing was judged. `model_package_arn` is None when
    the group had no Approved package (the threshold alone decided); `metrics` None with `error` when
    the champion could not be scored on this split."""
    record = (package or {}).get("CustomerMetadataProperties") or {}
    exported = found.get("Evaluation", {})
    reason = record.get(REASON_KEY) or exported.get("Reason")
    if not isinstance(evaluation, dict) and reason is None:
        return None
    scored = evaluation.get("champion") if isinstance(evaluation, dict) else None
    scored = scored if isinstance(scored, dict) else {}
    return {"model_package_arn": scored.get("model_package_arn"),
            "metrics": _metric_values(scored) if scored.get("regression_metrics") else None,
            "error": scored.get("error"),
            "tolerance_percent": _float(record.get(TOLERANCE_KEY) or exported.get("TolerancePercent")),
            "reason": reason}


def _join(uri: str | None, name: str) -> str | None:
    return f"{uri.rstrip('/')}/{name}" if uri else None


def _parent(uri: str | None) -> str | None:
    return posixpath.dirname(uri) if uri else None


def training(found: Mapping[str, Mapping[str, str]], *, sagemaker: Any, s3: Any) -> dict[str, Any] | None:
    """The training job's hyperparameters as DescribeTrainingJob shows them (the request's), and what
    the trainer resolved and its loss per epoch, from metrics.json in the job's output.tar.gz
    (SageMaker tars SM_OUTPUT_DATA_DIR next to model.tar.gz). None when no job was started."""
    name = found.get("TrainingJob", {}).get("TrainingJobName")
    if not name:
        return None
    try:
        job = sagemaker.describe_training_job(TrainingJobName=name)
    except Exception:  # gone (retention) or not readable: the stage table says what happened
        return {"job_name": name, "hyperparameters": None, "resolved_hyperparameters": None, "history": None}
    metrics = None
    model = (job.get("ModelArtifacts") or {}).get("S3ModelArtifacts")
    archive = read_bytes(s3, _join(_parent(model), "output.tar.gz"))
    if archive:
        metrics = _member_json(archive, METRICS_FILE)
    metrics = metrics if isinstance(metrics, dict) else {}
    return {"job_name": name, "hyperparameters": dict(job.get("HyperParameters") or {}),
            "resolved_hyperparameters": metrics.get("hyperparameters"), "best_epoch": metrics.get("best_epoch"),
            "history": metrics.get("history")}


def _member_json(archive: bytes, name: str) -> Any:
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            for member in tar.getmembers():
                if member.isfile() and posixpath.basename(member.name) == name:
                    handle = tar.extractfile(member)
                    return json.loads(handle.read()) if handle else None
    except (tarfile.TarError, ValueError, OSError):
        return None
    return None


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def decision_text(summary: Mapping[str, Any]) -> str:
    """APPROVED/REJECTED, or why there is none: the stage the execution failed at."""
    if summary.get("decision"):
        return str(summary["decision"])
    if summary.get("failed_stage"):
        return f"none (failed at {summary['failed_stage']})"
    return "none"


def render_report(summary: Mapping[str, Any], images: Mapping[str, str] | None = None) -> str:
    """report.md; `images`: plots written next to it ("loss", "evaluation" -> file name)."""
    images = images or {}
    threshold = "n/a" if summary["threshold"] is None else f"{summary['threshold']:g}"
    lines = [f"# Run {summary['pipeline_execution_id']}", "",
             f"- status: **{summary['status']}**, decision: **{decision_text(summary)}** "
             f"(threshold RMSE <= {threshold})"]
    metrics = summary.get("metrics")
    if metrics:
        lines.append(f"- test split: RMSE {metrics['rmse']:.2f}, MAE {metrics['mae']:.2f}, "
                     f"R2 {metrics['r2']:.4f}")
    quality = summary.get("data_quality")
    if quality:
        lines.append(f"- data: {quality['rows_in']} rows in, {quality['rows_out']} out, "
                     f"{quality['quarantined']} quarantined, {quality['duplicates']} duplicates")
        if quality.get("splits"):
            lines.append("- splits: " + ", ".join(f"{name} {count}" for name, count in quality["splits"].items()))
        if quality.get("quarantined_by_reason"):
            lines.append("- quarantined by reason: " + ", ".join(
                f"{reason} {count}" for reason, count in quality["quarantined_by_reason"].items()))
    lines += render_champion(metrics, summary.get("champion"))
    if summary.get("model_package_arn"):
        lines.append(f"- model package: {summary['model_package_arn']}")
    if summary.get("endpoint"):
        lines.append(f"- endpoint: {summary['endpoint']['name']} ({summary['endpoint']['status']})")
    test = summary.get("endpoint_test")
    if test:
        lines.append(f"- endpoint test: passed={test['passed']} on {test['rows']} records, "
                     f"RMSE {_num(test['rmse'])}, p50 {_num(test['p50_ms'])} ms, p99 {_num(test['p99_ms'])} ms")
    if summary.get("status_summary"):
        lines.append(f"- execution: {summary['status_summary']}")
    timings = summary["timings"]
    lines += [f"- wall {timings['wall_seconds']:.1f} s (jobs {timings['job_seconds']:.1f} s, orchestration "
              f"{timings['orchestration_seconds']:.1f} s)", "",
              "| stage | action | status | seconds | message |", "|---|---|---|---|---|"]
    for stage in summary["stages"]:
        for action in stage["actions"]:
            message = action["message"].replace("|", "\\|").replace("\n", " ")  # whole: the cause is often last
            lines.append(f"| {stage['name']} | {action['name']} | {action['status']} | "
                         f"{action['seconds']:.1f} | {message} |")
    lines += render_deployment(summary)
    lines += render_training(summary.get("training"), images.get("loss"))
    if images.get("evaluation"):
        lines += ["", f"![Predicted versus actual on the test split]({images['evaluation']})"]
    if summary.get("access"):
        lines += ["", *render_access(summary["access"])]
    elif summary.get("access_unavailable"):
        lines += ["", "## Access", "", f"Not available: {summary['access_unavailable']}."]
    return "\n".join(lines) + "\n"


def render_champion(challenger: Mapping[str, Any] | None, gate: Mapping[str, Any] | None) -> list[str]:
    """Champion vs challenger: both on the same test split, the tolerance, and why the gate decided so."""
    if not gate:
        return []
    tolerance = "n/a" if gate["tolerance_percent"] is None else f"{gate['tolerance_percent']:g} %"
    if not gate["model_package_arn"]:
        lines = [f"- champion: none (no Approved package in the group), tolerance {tolerance}"]
    elif gate["metrics"] is None:
        lines = [f"- champion: {gate['model_package_arn']}, not scored on this split: {gate['error']}"]
    else:
        ours, theirs = challenger or {}, gate["metrics"]
        lines = [f"- champion: {gate['model_package_arn']}, tolerance {tolerance}", "",
                 "| test split | challenger | champion |", "|---|---|---|"]
        lines += [f"| {label} | {_num(ours.get(key), digits)} | {_num(theirs.get(key), digits)} |"
                  for label, key, digits in (("RMSE", "rmse", 2), ("MAE", "mae", 2), ("R2", "r2", 4))]
        lines.append("")
    if gate["reason"]:
        lines.append(f"- gate: {gate['reason']}")
    return lines


def render_deployment(summary: Mapping[str, Any]) -> list[str]:
    """Dev endpoint, the approval, prod endpoint: what each serves and its test; empty before any deploy."""
    endpoints = summary.get("endpoints") or {}
    if not any(endpoints.values()) and not summary.get("approval"):
        return []
    lines = ["", "## Deployment", ""]
    for environment in ENVIRONMENTS:
        endpoint = endpoints.get(environment)
        if environment == "prod" and summary.get("approval"):
            lines.append(f"- {approval_line(summary['approval'])}")
        if not endpoint:
            lines.append(f"- {environment}: not deployed by this execution")
            continue
        lines.append(f"- {environment}: {endpoint['name']} ({endpoint['status'] or 'not deployed'}), serves "
                     f"{endpoint['model_package_arn'] or 'an unknown package'}; test: {_test_text(endpoint['test'])}")
    served = serving_line(summary)
    if served:
        lines.append(f"- {served}")
    return lines


def _test_text(test: Mapping[str, Any] | None) -> str:
    if not test:
        return "not run"
    return (f"{'passed' if test['passed'] else 'FAILED'} on {test['rows']} records, RMSE {_num(test['rmse'])}, "
            f"p50 {_num(test['p50_ms'])} ms, p99 {_num(test['p99_ms'])} ms"
            + ("" if test["passed"] else f" ({test['message']})"))


def approval_line(approval: Mapping[str, Any]) -> str:
    """e.g. "approval Approval/ApproveForProd: Rejected by arn:...:user/ana: worse than the champion"."""
    name = f"approval {approval['stage']}/{approval['action']}"
    summary = approval.get("summary") or ""
    if approval["status"] == "Rejected" and summary.startswith("Rejected by"):  # the engine's message names both
        return f"{name}: {summary}"
    by = f" by {approval['by']}" if approval.get("by") else ""
    return f"{name}: {approval['status']}{by}" + (f": {summary}" if summary else "")


def serving_line(summary: Mapping[str, Any]) -> str | None:
    """Whether dev and prod serve the same package, and whether it is the one this execution registered."""
    endpoints = {env: e for env, e in (summary.get("endpoints") or {}).items() if e and e.get("status")}
    if not endpoints:
        return None
    registered = summary.get("model_package_arn")
    packages = {e.get("model_package_arn") for e in endpoints.values()}
    if len(endpoints) == 2 and len(packages) == 1 and None not in packages:
        (package,) = packages
        names = " and ".join(f"{env} {e['name']}" for env, e in endpoints.items())
        verdict = "this execution's approved package" if package == registered else \
            f"not this execution's package {registered or '(none registered)'}"
        return f"{names} serve {package} ({verdict})"
    said = "; ".join(f"{env} {e['name']} serves {e.get('model_package_arn') or 'an unknown package'}"
                     for env, e in endpoints.items())
    if len(endpoints) == 2:
        return f"{said}: NOT the same package"
    return f"{said}; {'prod' if 'dev' in endpoints else 'dev'} was not deployed by this execution"


def render_training(training: Mapping[str, Any] | None, loss_plot: str | None) -> list[str]:
    if not training:
        return []
    lines = ["", "## Training", "", f"- job: {training['job_name']}"]
    requested = training.get("hyperparameters")
    if requested is not None:
        shown = ", ".join(f"{k}={v}" for k, v in sorted(requested.items())) or "none (the image's defaults)"
        lines.append(f"- hyperparameters (DescribeTrainingJob): {shown}")
    resolved = training.get("resolved_hyperparameters")
    if resolved:
        lines.append("- hyperparameters the trainer resolved: "
                     + ", ".join(f"{k}={v}" for k, v in sorted(resolved.items())))
    history = training.get("history") or []
    if training.get("best_epoch") is not None:
        lines.append(f"- best epoch: {training['best_epoch']} of {len(history)}")
    if loss_plot:
        lines += ["", f"![Training and validation loss per epoch]({loss_plot})"]
    elif history:
        lines += ["", "| epoch | train_loss | val_loss |", "|---|---|---|"]
        lines += [f"| {row.get('epoch')} | {_num(row.get('train_loss'), 5)} | {_num(row.get('val_loss'), 5)} |"
                  for row in history]
    return lines


def plot_loss(history: list[Mapping[str, Any]], path: Path) -> bool:
    """loss.png: training and validation loss per epoch; False when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display: a file only
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    epochs = [float(row.get("epoch", "nan")) for row in history]
    figure, axes = plt.subplots(figsize=(6, 4))
    for key, label in (("train_loss", "training"), ("val_loss", "validation")):  # train.py's history rows
        axes.plot(epochs, [float(row.get(key, "nan")) for row in history], marker="o", label=label)
    axes.set_xlabel("epoch")
    axes.set_ylabel("loss")
    axes.set_yscale("log")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True


def write_outputs(run_dir: Path, summary: Mapping[str, Any], evaluation_plot: bytes | None = None) -> dict[str, Path]:
    """summary.json, report.md and the plots next to it; returns what was written by kind."""
    run_dir.mkdir(parents=True, exist_ok=True)
    written = {"summary": run_dir / "summary.json", "report": run_dir / "report.md"}
    written["summary"].write_text(json.dumps(summary, indent=2, default=str) + "\n")
    history = (summary.get("training") or {}).get("history")
    if history and plot_loss(history, run_dir / LOSS_PLOT):
        written["loss"] = run_dir / LOSS_PLOT
    if evaluation_plot:
        (run_dir / EVALUATION_PLOT).write_bytes(evaluation_plot)
        written["evaluation"] = run_dir / EVALUATION_PLOT
    images = {kind: path.name for kind, path in written.items() if kind in ("loss", "evaluation")}
    written["report"].write_text(render_report(summary, images))
    return written


def _num(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def job_times(client: Callable[[str], Any], found: Mapping[str, Mapping[str, str]]) -> dict[str, float]:
    """Each job's own run time, as the services report it, by kind ("glue", "training", "processing");
    a job the execution did not reach is absent."""
    times: dict[str, float] = {}
    etl = found.get("EtlJob", {})
    if etl.get("JobRunId"):
        run = client("glue").get_job_run(JobName=etl["GlueJobName"], RunId=etl["JobRunId"])["JobRun"]
        # StartedOn -> CompletedOn, as the SageMaker jobs' start -> end: ExecutionTime is whole seconds, and
        # up to a second of the job would be counted as orchestration.
        started, completed = run.get("StartedOn"), run.get("CompletedOn")
        times["glue"] = _seconds(started, completed) if started and completed else float(run.get("ExecutionTime") or 0)
    sagemaker = client("sagemaker")
    name = found.get("TrainingJob", {}).get("TrainingJobName")
    if name:
        job = sagemaker.describe_training_job(TrainingJobName=name)
        times["training"] = _seconds(job.get("TrainingStartTime"), job.get("TrainingEndTime"))
    name = found.get("EvaluationJob", {}).get("ProcessingJobName")
    if name:
        job = sagemaker.describe_processing_job(ProcessingJobName=name)
        times["processing"] = _seconds(job.get("ProcessingStartTime"), job.get("ProcessingEndTime"))
    return times


def job_seconds(client: Callable[[str], Any], found: Mapping[str, Mapping[str, str]]) -> float:
    """The jobs' own run time in all: Glue run, training, processing."""
    return sum(job_times(client, found).values())


def summarise_execution(client: Callable[[str], Any], pipeline: str, execution_id: str,
                        run_dir: Path) -> tuple[dict[str, Any], dict[str, Path]]:
    """`mlops-local summary`: summary.json/report.md for any execution (started by `mlops-local run`,
    a trigger, the console) from public API answers only, through `client(service)`."""
    codepipeline = client("codepipeline")
    collected = collect(codepipeline, pipeline, execution_id)
    actions = collected["actions"]  # GetPipelineExecution has no times: the first start to the last update
    wall = _seconds(min(d["startTime"] for d in actions), max(d["lastUpdateTime"] for d in actions)) \
        if actions else 0.0
    s3 = client("s3")
    summary = build_summary(collected, s3=s3, sagemaker=client("sagemaker"), glue=client("glue"),
                            wall_seconds=wall, job_times=lambda found: job_times(client, found))
    summary["access"] = None
    summary["access_unavailable"] = ACCESS_IN_PROCESS_ONLY
    written = write_outputs(run_dir, summary, read_bytes(s3, summary.get("evaluation_plot_uri")))
    return summary, written


def find_pipeline(client: Callable[[str], Any], execution_id: str) -> str:
    """The pipeline an execution belongs to (ListPipelines, then each one's GetPipelineExecution)."""
    codepipeline = client("codepipeline")
    names = [p["name"] for page in codepipeline.get_paginator("list_pipelines").paginate()
             for p in page["pipelines"]]
    for name in names:
        try:
            codepipeline.get_pipeline_execution(pipelineName=name, pipelineExecutionId=execution_id)
            return name
        except codepipeline.exceptions.PipelineExecutionNotFoundException:
            continue
    raise LookupError(f"no pipeline has execution {execution_id} (searched {len(names)}: {', '.join(names)})")
