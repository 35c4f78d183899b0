"""summary.json from public API answers: the decision from the Model Registry, the threshold from the
execution's resolved variables (moto for S3 and SageMaker; the CodePipeline answers written out)."""
from __future__ import annotations

import io
import json
import tarfile
from datetime import datetime, timedelta, timezone
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from mlops_local.summary import access_summary, build_summary, render_report, write_outputs

EXECUTION = "2d6b0c50-6f3a-4d8e-9f1a-1234567890ab"
OTHER_EXECUTION = "0f0f0f0f-1111-2222-3333-444444444444"
GROUP = "mlops-diamonds-models"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mlops-diamonds-training:c0ffee0"
MODEL = f"s3://mlops-data/runs/{EXECUTION}/training/job/output/model.tar.gz"
EVALUATION_URI = f"s3://mlops-data/runs/{EXECUTION}/evaluation/evaluation.json"
STARTED = datetime(2024, 5, 1, 10, 0, tzinfo=timezone.utc)
STAGES = [("Source", ["ModelSource"]), ("Training", ["SubmitTraining", "MonitorTraining"]),
          ("Evaluation", ["SubmitEvaluation", "MonitorEvaluation"]),
          ("Deployment", ["RegisterModel", "TestEndpoint"])]
SUMMARY_KEYS = {"pipeline_execution_id", "mode", "status", "decision", "threshold", "metrics", "stages",
                "model_package_arn", "endpoint", "endpoint_test", "data_quality", "timings", "status_summary",
                "failed_stage", "training", "evaluation_plot_uri", "champion", "endpoints", "approval"}


def action(stage: str, name: str, status: str, seconds: int, *, namespace: str | None = None,
           params: dict[str, Any] | None = None, variables: dict[str, str] | None = None,
           message: str = "") -> dict[str, Any]:
    """One ListActionExecutions entry, shaped as CodePipeline answers."""
    result = {"errorDetails": {"code": "JobFailed", "message": message}} if status == "Failed" else \
        {"externalExecutionSummary": message}
    return {"pipelineExecutionId": EXECUTION, "stageName": stage, "actionName": name, "status": status,
            "startTime": STARTED + timedelta(seconds=seconds),
            "lastUpdateTime": STARTED + timedelta(seconds=seconds + 1),
            "input": {"namespace": namespace,
                      "resolvedConfiguration": {"UserParameters": json.dumps(params or {})}},
            "output": {"outputVariables": variables or {}, "executionResult": result}}


def collected(actions: list[dict[str, Any]], status: str,
              variables: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """What summary.collect returns: GetPipelineExecution, ListActionExecutions, GetPipeline."""
    execution = {"pipelineExecutionId": EXECUTION, "status": status,
                 "variables": [{"name": "QualityThreshold", "resolvedValue": "650"}] if variables is None
                 else variables}
    return {"execution": execution, "actions": actions, "stages": STAGES}


def until_evaluation(monitor_status: str, message: str, variables: dict[str, str] | None = None) -> list:
    monitor = {"processing_job_name": "job", "evaluation_uri": EVALUATION_URI, "threshold": "650",
               "model_package_group": GROUP, "image_uri": IMAGE, "model_data_uri": MODEL,
               "execution_id": EXECUTION}
    return [
        action("Source", "ModelSource", "Succeeded", 0),
        action("Training", "SubmitTraining", "Succeeded", 1, params={"execution_id": EXECUTION}),
        action("Training", "MonitorTraining", "Succeeded", 2, namespace="Training"),
        action("Evaluation", "SubmitEvaluation", "Succeeded", 3, namespace="EvaluationJob",
               variables={"ProcessingJobName": "job", "EvaluationUri": EVALUATION_URI}),
        action("Evaluation", "MonitorEvaluation", monitor_status, 4, namespace="Evaluation", params=monitor,
               variables=variables, message=message),
    ]


@pytest.fixture
def aws():
    """moto S3 (evaluation.json) and SageMaker (the Model Registry) with the group and its packages."""
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="mlops-data")
        s3.put_object(Bucket="mlops-data", Key=EVALUATION_URI.split("/", 3)[3], Body=json.dumps(
            {"regression_metrics": {"rmse": {"value": 700.5}, "mae": {"value": 350.25}, "r2": {"value": 0.9}}}))
        sagemaker = boto3.client("sagemaker", region_name="us-east-1")
        sagemaker.create_model_package_group(ModelPackageGroupName=GROUP)
        yield s3, sagemaker


def register(sagemaker: Any, status: str, metadata: dict[str, str]) -> str:
    arn: str = sagemaker.create_model_package(
        ModelPackageGroupName=GROUP, ModelApprovalStatus=status, CustomerMetadataProperties=metadata,
        InferenceSpecification={"Containers": [{"Image": IMAGE, "ModelDataUrl": MODEL}],
                                "SupportedContentTypes": ["text/csv"],
                                "SupportedResponseMIMETypes": ["text/csv"]})["ModelPackageArn"]
    return arn


def summarise(aws: tuple[Any, Any], run: dict[str, Any]) -> dict[str, Any]:
    s3, sagemaker = aws
    return build_summary(run, s3=s3, sagemaker=sagemaker, glue=None, wall_seconds=12.5)


def test_approved_reads_the_registered_package(aws):
    _, sagemaker = aws
    arn = register(sagemaker, "Approved", {"ExecutionId": EXECUTION, "Decision": "APPROVED"})
    actions = until_evaluation("Succeeded", "Model APPROVED: RMSE 700.50 <= threshold 750",
                               variables={"Decision": "APPROVED", "Rmse": "700.5"}) + [
        action("Deployment", "RegisterModel", "Succeeded", 5, namespace="Registry",
               variables={"ModelPackageArn": arn})]

    summary = summarise(aws, collected(actions, "Succeeded"))

    assert set(summary) == SUMMARY_KEYS
    assert (summary["status"], summary["decision"], summary["threshold"]) == ("Succeeded", "APPROVED", 650.0)
    assert summary["model_package_arn"] == arn
    assert summary["metrics"] == {"rmse": 700.5, "mae": 350.25, "r2": 0.9}
    assert [s["name"] for s in summary["stages"]] == ["Source", "Training", "Evaluation", "Deployment"]


@pytest.mark.parametrize("message", ["Model REJECTED: RMSE 700.50 > threshold 650",
                                     "the candidate fell short"], ids=["usual-message", "other-message"])
def test_rejected_is_read_from_the_registry_not_the_message(aws, message):
    _, sagemaker = aws
    register(sagemaker, "Rejected", {"ExecutionId": EXECUTION, "Decision": "REJECTED", "Threshold": "600"})
    register(sagemaker, "Approved", {"ExecutionId": OTHER_EXECUTION, "Decision": "APPROVED"})  # newer

    summary = summarise(aws, collected(until_evaluation("Failed", message), "Failed"))

    assert (summary["status"], summary["decision"]) == ("Failed", "REJECTED")
    assert summary["threshold"] == 650.0  # the execution's variable, not the package's metadata
    assert summary["model_package_arn"] is None  # only RegisterModel's export is the deployed package


CHAMPION_ARN = f"arn:aws:sagemaker:us-east-1:123456789012:model-package/{GROUP}/1"


def put_evaluation(s3: Any, champion: dict[str, Any] | None) -> None:
    report: dict[str, Any] = {"regression_metrics": {"rmse": {"value": 700.5}, "mae": {"value": 350.25},
                                                     "r2": {"value": 0.9}}}
    if champion is not None:
        report["champion"] = champion
    s3.put_object(Bucket="mlops-data", Key=EVALUATION_URI.split("/", 3)[3], Body=json.dumps(report))


@pytest.mark.parametrize("scored, metadata, expected, shown", [
    pytest.param(None, {"TolerancePercent": "0", "DecisionReason": "RMSE 700.50 is within threshold 750 no champion"},
                 {"model_package_arn": None, "metrics": None, "error": None, "tolerance_percent": 0.0,
                  "reason": "RMSE 700.50 is within threshold 750 no champion"},
                 ["- champion: none (no Approved package in the group), tolerance 0 %",
                  "- gate: RMSE 700.50 is within threshold 750 no champion"], id="no-champion"),
    pytest.param({"model_package_arn": CHAMPION_ARN, "regression_metrics": {
        "rmse": {"value": 710.0}, "mae": {"value": 360.0}, "r2": {"value": 0.89}}},
                 {"TolerancePercent": "2", "DecisionReason": "RMSE 700.50 is within threshold 750 champion"},
                 {"model_package_arn": CHAMPION_ARN, "metrics": {"rmse": 710.0, "mae": 360.0, "r2": 0.89},
                  "error": None, "tolerance_percent": 2.0, "reason": "RMSE 700.50 is within threshold 750 champion"},
                 [f"- champion: {CHAMPION_ARN}, tolerance 2 %", "| test split | challenger | champion |",
                  "| RMSE | 700.50 | 710.00 |", "| MAE | 350.25 | 360.00 |", "| R2 | 0.9000 | 0.8900 |",
                  "- gate: RMSE 700.50 is within threshold 750 champion"], id="champion-scored"),
    pytest.param({"model_package_arn": CHAMPION_ARN, "error": "header does not match"},
                 {"TolerancePercent": "0", "DecisionReason": "could not be scored"},
                 {"model_package_arn": CHAMPION_ARN, "metrics": None, "error": "header does not match",
                  "tolerance_percent": 0.0, "reason": "could not be scored"},
                 [f"- champion: {CHAMPION_ARN}, not scored on this split: header does not match"],
                 id="champion-not-scored"),
])
def test_champion_vs_challenger_from_the_evaluation_and_the_package(aws, scored, metadata, expected, shown):
    s3, sagemaker = aws
    put_evaluation(s3, scored)
    arn = register(sagemaker, "Approved", {"ExecutionId": EXECUTION, "Decision": "APPROVED", **metadata})
    actions = until_evaluation("Succeeded", "Model APPROVED", variables={"Decision": "APPROVED"}) + [
        action("Deployment", "RegisterModel", "Succeeded", 5, namespace="Registry",
               variables={"ModelPackageArn": arn})]

    summary = summarise(aws, collected(actions, "Succeeded"))

    assert summary["champion"] == expected
    report = render_report(summary).splitlines()
    assert all(line in report for line in shown), report


def test_a_rejected_challenger_shows_the_reason_from_the_rejected_package(aws):
    s3, sagemaker = aws
    put_evaluation(s3, {"model_package_arn": CHAMPION_ARN, "regression_metrics": {
        "rmse": {"value": 600.0}, "mae": {"value": 300.0}, "r2": {"value": 0.95}}})
    reason = f"RMSE 700.50 is worse than the champion: champion {CHAMPION_ARN} RMSE 600.00 plus tolerance 0 percent"
    register(sagemaker, "Rejected", {"ExecutionId": EXECUTION, "Decision": "REJECTED", "TolerancePercent": "0",
                                     "DecisionReason": reason})

    summary = summarise(aws, collected(until_evaluation("Failed", f"Model REJECTED: {reason}"), "Failed"))

    assert summary["decision"] == "REJECTED"
    assert summary["champion"]["metrics"]["rmse"] == 600.0 and summary["champion"]["reason"] == reason
    assert "| RMSE | 700.50 | 600.00 |" in render_report(summary).splitlines()


def test_a_run_that_stopped_before_evaluation_has_no_champion_section():
    assert "champion" not in "".join(render_report({
        "pipeline_execution_id": EXECUTION, "status": "Failed", "decision": None, "threshold": None,
        "metrics": None, "champion": None, "stages": [], "timings": {
            "wall_seconds": 1.0, "job_seconds": 0.0, "orchestration_seconds": 1.0}}))


def test_a_rejected_message_without_a_registry_record_is_no_decision(aws):
    _, sagemaker = aws
    register(sagemaker, "Rejected", {"ExecutionId": OTHER_EXECUTION, "Decision": "REJECTED"})
    run = collected(until_evaluation("Failed", "Model REJECTED: RMSE 700.50 > threshold 650"), "Failed")

    assert summarise(aws, run)["decision"] is None


def test_the_approval_status_decides_when_the_metadata_has_no_decision(aws):
    _, sagemaker = aws
    register(sagemaker, "Rejected", {"ExecutionId": EXECUTION})
    run = collected(until_evaluation("Failed", "judged"), "Failed")

    assert summarise(aws, run)["decision"] == "REJECTED"


def test_failed_before_evaluation_has_no_decision_and_asks_no_registry():
    sagemaker = boto3.client("sagemaker", region_name="us-east-1")
    s3 = boto3.client("s3", region_name="us-east-1")
    actions = until_evaluation("Succeeded", "")[:2] + [
        action("Training", "MonitorTraining", "Failed", 2, namespace="Training",
               message="SageMaker training job job Failed (Failed): AlgorithmError")]
    with Stubber(sagemaker) as stub, Stubber(s3):  # any request would fail: nothing is stubbed
        summary = build_summary(collected(actions, "Failed"), s3=s3, sagemaker=sagemaker, glue=None,
                                wall_seconds=3.0)
        stub.assert_no_pending_responses()

    assert (summary["status"], summary["decision"], summary["metrics"]) == ("Failed", None, None)
    assert [s["status"] for s in summary["stages"]] == ["Succeeded", "Failed", "Skipped", "Skipped"]


@pytest.mark.parametrize("variables, expected, shown", [
    ([{"name": "QualityThreshold", "resolvedValue": "612.5"}], 612.5, "threshold RMSE <= 612.5"),
    ([{"name": "Other", "resolvedValue": "1"}, {"name": "QualityThreshold", "resolvedValue": "5000"}], 5000.0,
     "threshold RMSE <= 5000"),
    ([], None, "threshold RMSE <= n/a"),
], ids=["resolved", "among-others", "absent"])
def test_the_threshold_is_the_executions_resolved_variable(aws, variables, expected, shown):
    _, sagemaker = aws
    register(sagemaker, "Rejected", {"ExecutionId": EXECUTION, "Decision": "REJECTED", "Threshold": "600"})

    summary = summarise(aws, collected(until_evaluation("Failed", "judged"), "Failed", variables))

    assert summary["threshold"] == expected
    assert shown in render_report(summary)


def test_the_report_ends_with_the_access_section_when_the_run_has_one(aws):
    summary = summarise(aws, collected(until_evaluation("Failed", "judged"), "Failed"))
    role = "arn:aws:iam::123456789012:role/worker"
    summary["access"] = access_summary(
        [{"principal": {"kind": "assumed-role", "arn": "arn:aws:sts::123456789012:assumed-role/worker/fn",
                        "role": role, "session": "fn"}, "service": "glue", "operation": "GetJob",
          "checks": [{"action": "glue:GetJob", "resource": "*", "decision": "denied",
                      "reason": "no identity-based policy allows"}], "decision": "denied"}],
        roles={role: (), "arn:aws:iam::123456789012:role/idle": ()})

    report = render_report(summary)

    assert "| Evaluation | MonitorEvaluation | Failed |" in report
    access = report[report.index("## Access"):]
    assert "enforced:" in access and f"- {role}: glue:GetJob on * (no identity-based policy allows) x1" in access
    unused = access[access.index("### Granted but not used"):]
    assert unused.endswith("\n- unused roles (no session made a request): idle\n")  # worker has no grants


ETL_OUTPUT = f"s3://mlops-data/runs/{EXECUTION}/etl/"
TRAINING_OUTPUT = f"s3://mlops-data/runs/{EXECUTION}/training"
HISTORY = [{"epoch": 1, "train_loss": 0.5, "val_loss": 0.6}, {"epoch": 2, "train_loss": 0.25, "val_loss": 0.375}]
QUALITY = {"rows_in": 100, "rows_out": 90, "quarantined": 7, "duplicates": 3,
           "quarantined_by_reason": {"carat out of range": 5, "cut not allowed": 2},
           "splits": {"train": 63, "validation": 13, "test": 14}, "endpoint_test": 10}


def trained(aws: tuple[Any, Any]) -> list[dict[str, Any]]:
    """ETL and training as the stack's actions export them, their outputs in moto's S3 and SageMaker:
    data-quality.json under EtlOutputUri, metrics.json in the job's output.tar.gz."""
    s3, sagemaker = aws
    s3.put_object(Bucket="mlops-data", Key=f"runs/{EXECUTION}/etl/data-quality.json", Body=json.dumps(QUALITY))
    sagemaker.create_training_job(
        TrainingJobName="job", HyperParameters={"epochs": "2"}, RoleArn="arn:aws:iam::123456789012:role/r",
        AlgorithmSpecification={"TrainingImage": IMAGE, "TrainingInputMode": "File"},
        OutputDataConfig={"S3OutputPath": TRAINING_OUTPUT}, StoppingCondition={"MaxRuntimeInSeconds": 60},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 5})
    metrics = json.dumps({"best_epoch": 2, "hyperparameters": {"epochs": 2, "learning_rate": 0.003},
                          "history": HISTORY}).encode()
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        member = tarfile.TarInfo("metrics.json")
        member.size = len(metrics)
        tar.addfile(member, io.BytesIO(metrics))
    s3.put_object(Bucket="mlops-data", Key=f"runs/{EXECUTION}/training/job/output/output.tar.gz",
                  Body=archive.getvalue())
    counts = {"RowsIn": "100", "RowsOut": "90", "Quarantined": "7", "Duplicates": "3"}
    return [action("DataAndFeatureEngineering", "SubmitEtl", "Succeeded", 0, namespace="EtlJob",
                   variables={"EtlOutputUri": ETL_OUTPUT}),
            action("DataAndFeatureEngineering", "MonitorEtl", "Succeeded", 1, namespace="Etl", variables=counts),
            action("Training", "SubmitTraining", "Succeeded", 2, namespace="TrainingJob",
                   variables={"TrainingJobName": "job"}),
            action("Training", "MonitorTraining", "Failed", 3, namespace="Training",
                   message="SageMaker training job job Failed: " + "x" * 300 + " [log: /home/me/runs/job.log]")]


def with_etl(run: dict[str, Any]) -> dict[str, Any]:
    return {**run, "stages": [("DataAndFeatureEngineering", ["SubmitEtl", "MonitorEtl"]), *run["stages"]]}


def test_the_summary_reads_the_etl_report_and_the_trainers_metrics(aws):
    summary = summarise(aws, with_etl(collected(trained(aws), "Failed")))

    assert summary["data_quality"]["quarantined_by_reason"] == QUALITY["quarantined_by_reason"]
    assert summary["data_quality"]["splits"] == QUALITY["splits"]
    assert summary["training"] == {"job_name": "job", "hyperparameters": {"epochs": "2"},
                                   "resolved_hyperparameters": {"epochs": 2, "learning_rate": 0.003},
                                   "best_epoch": 2, "history": HISTORY}
    assert (summary["decision"], summary["failed_stage"]) == (None, "Training")


def test_the_report_shows_training_quarantine_splits_and_the_whole_message(aws):
    report = render_report(summarise(aws, with_etl(collected(trained(aws), "Failed"))))

    assert "decision: **none (failed at Training)**" in report and "**None**" not in report
    assert "- hyperparameters (DescribeTrainingJob): epochs=2" in report
    assert "- hyperparameters the trainer resolved: epochs=2, learning_rate=0.003" in report
    assert "- quarantined by reason: carat out of range 5, cut not allowed 2" in report
    assert "- splits: train 63, validation 13, test 14" in report
    assert "| 2 | 0.25000 | 0.37500 |" in report  # no plot written: the loss table
    assert "x" * 300 + " [log: /home/me/runs/job.log] |" in report  # the cause at the end is kept


@pytest.mark.parametrize("stages, decision, shown", [
    ([("Training", "Failed")], None, "none (failed at Training)"),
    ([("Evaluation", "Stopped")], None, "none (failed at Evaluation)"),
    ([("Evaluation", "Failed")], "REJECTED", "REJECTED"),
    ([], None, "none"),
], ids=["failed", "stopped", "rejected", "nothing-failed"])
def test_the_decision_line_names_the_stage_that_failed(stages, decision, shown):
    summary = {"pipeline_execution_id": EXECUTION, "status": "Failed", "decision": decision, "threshold": None,
               "failed_stage": stages[0][0] if stages else None, "stages": [],
               "timings": {"wall_seconds": 1.0, "job_seconds": 0.0, "orchestration_seconds": 1.0}}

    assert f"decision: **{shown}** (threshold" in render_report(summary)


def test_write_outputs_puts_the_loss_plot_and_the_evaluation_plot_next_to_the_report(aws, tmp_path):
    pytest.importorskip("matplotlib")
    summary = summarise(aws, with_etl(collected(trained(aws), "Failed")))

    written = write_outputs(tmp_path, summary, evaluation_plot=b"\x89PNG evaluation")

    assert sorted(written) == ["evaluation", "loss", "report", "summary"]
    assert (tmp_path / "loss.png").read_bytes().startswith(b"\x89PNG")
    assert (tmp_path / "evaluation.png").read_bytes() == b"\x89PNG evaluation"
    report = (tmp_path / "report.md").read_text()
    assert "![Training and validation loss per epoch](loss.png)" in report and "| epoch | train_loss |" not in report
    assert "(evaluation.png)" in report
    assert json.loads((tmp_path / "summary.json").read_text())["training"]["history"] == HISTORY


def test_a_run_writes_the_evaluation_plot_from_its_work_dir_and_says_where_everything_is(aws, tmp_path):
    from mlops_local.pipeline_run import results_line, write_outputs as write_run_outputs

    plot = tmp_path / "work/sagemaker/processing/job/processing/evaluation/evaluation.png"
    plot.parent.mkdir(parents=True)
    plot.write_bytes(b"\x89PNG plot")
    summary = summarise(aws, collected(until_evaluation("Failed", "judged"), "Failed"))

    line = results_line(write_run_outputs(tmp_path / "run", summary, tmp_path / "work"))

    assert (tmp_path / "run/evaluation.png").read_bytes() == b"\x89PNG plot"
    assert line == (f"results: {tmp_path}/run/summary.json, {tmp_path}/run/report.md, "
                    f"{tmp_path}/run/evaluation.png")


# -- dev, the approval, prod -------------------------------------------------------------------------------
APPROVAL_TYPE = {"category": "Approval", "owner": "AWS", "provider": "Manual", "version": "1"}
APPROVER = "arn:aws:iam::123456789012:user/ana"
OLD_PACKAGE = f"arn:aws:sagemaker:us-east-1:123456789012:model-package/{GROUP}/0"
TWO_ENDPOINTS = STAGES + [("Approval", ["ApproveForProd"]),
                          ("Production", ["CreateProdDeployConfig", "DeployProdEndpoint", "TestProdEndpoint"])]
TESTED = {"Rows": "10", "SampleRmse": "512.5", "P50Ms": "3.5", "P99Ms": "9.25"}


def serve(sagemaker: Any, endpoint: str, package: str) -> None:
    """An endpoint whose one variant's model is made from `package` (what templates/endpoint.yaml creates)."""
    sagemaker.create_model(ModelName=f"{endpoint}-model", ExecutionRoleArn="arn:aws:iam::123456789012:role/r",
                           PrimaryContainer={"ModelPackageName": package})
    sagemaker.create_endpoint_config(EndpointConfigName=f"{endpoint}-config", ProductionVariants=[{
        "VariantName": "AllTraffic", "ModelName": f"{endpoint}-model", "InstanceType": "ml.m5.large",
        "InitialInstanceCount": 1}])
    sagemaker.create_endpoint(EndpointName=endpoint, EndpointConfigName=f"{endpoint}-config")


def approval_action(status: str, message: str, by: str | None, seconds: int = 8) -> dict[str, Any]:
    detail = action("Approval", "ApproveForProd", status, seconds, message=message)
    detail["actionExecutionId"] = "approval-1"
    detail["input"].update(actionTypeId=APPROVAL_TYPE, configuration={"CustomData": "RMSE 700.5 vs champion none"})
    if by:
        detail["updatedBy"] = by
    return detail


def two_endpoint_run(aws: tuple[Any, Any], shape: str) -> dict[str, Any]:
    """An execution through dev, the approval and prod, cut where `shape` says; its collected answers."""
    _, sagemaker = aws
    if shape == "gate-rejected":  # Approval and Production never ran (Skipped)
        register(sagemaker, "Rejected", {"ExecutionId": EXECUTION, "Decision": "REJECTED"})
        return {"execution": {"pipelineExecutionId": EXECUTION, "status": "Failed"}, "stages": TWO_ENDPOINTS,
                "actions": until_evaluation("Failed", "Model REJECTED")}
    arn = register(sagemaker, "Approved", {"ExecutionId": EXECUTION, "Decision": "APPROVED"})
    serve(sagemaker, "mlops-dev", arn)
    actions = until_evaluation("Succeeded", "Model APPROVED", variables={"Decision": "APPROVED"}) + [
        action("Deployment", "RegisterModel", "Succeeded", 5, namespace="Registry", variables={"ModelPackageArn": arn}),
        action("Deployment", "DeployEndpoint", "Succeeded", 6, namespace="Endpoint",
               variables={"EndpointName": "mlops-dev", "ModelPackageArn": arn}),
        action("Deployment", "TestEndpoint", "Succeeded", 7, namespace="EndpointTest", variables=TESTED)]
    stages, status = TWO_ENDPOINTS, "Succeeded"
    state: dict[str, Any] = {}
    if shape == "before-the-prod-stages":
        stages = STAGES
    elif shape == "waiting":
        actions.append(approval_action("InProgress", "", None))
        status = "InProgress"
    elif shape in ("approval-rejected", "approval-expired"):
        rejected = shape == "approval-rejected"
        message = f"Rejected by {APPROVER}: worse than hoped" if rejected else \
            "Approval expired: no PutApprovalResult answer within 7 days (the approval action's timeout)"
        actions.append(approval_action("Failed", message, None))
        status = "Failed"
        if rejected:  # ListActionExecutions without updatedBy: GetPipelineState names who answered
            state = {"stageStates": [{"stageName": "Approval", "actionStates": [{"actionName": "ApproveForProd",
                     "latestExecution": {"actionExecutionId": "approval-1", "lastUpdatedBy": APPROVER}}]}]}
    else:
        prod_package = OLD_PACKAGE if shape == "prod-serves-another" else arn  # e.g. rolled back on an alarm
        serve(sagemaker, "mlops-prod", prod_package)
        prod_test = "Failed" if shape == "prod-test-failed" else "Succeeded"
        actions += [
            approval_action("Succeeded", "metrics reviewed", APPROVER),
            action("Production", "DeployProdEndpoint", "Succeeded", 9, namespace="ProdEndpoint",
                   variables={"EndpointName": "mlops-prod", "ModelPackageArn": arn}),
            action("Production", "TestProdEndpoint", prod_test, 10, namespace="ProdEndpointTest",
                   variables=TESTED if prod_test == "Succeeded" else None,
                   message="" if prod_test == "Succeeded" else "3 of 10 records failed")]
        status = "Succeeded" if prod_test == "Succeeded" else "Failed"
    return {"execution": {"pipelineExecutionId": EXECUTION, "status": status}, "stages": stages,
            "actions": actions, "state": state}


@pytest.mark.parametrize("shape, approval, by, dev, prod, code", [
    ("approved-and-deployed", "Approved", APPROVER, True, True, 0),
    ("before-the-prod-stages", None, None, True, False, 0),
    ("waiting", "Waiting", None, True, False, 1),
    ("approval-rejected", "Rejected", APPROVER, True, False, 4),
    ("approval-expired", "Expired", None, True, False, 4),
    ("prod-test-failed", "Approved", APPROVER, True, True, 1),
    ("gate-rejected", None, None, False, False, 3),
], ids=lambda value: value if isinstance(value, str) and "-" in value else None)
def test_dev_the_approval_and_prod_in_the_summary_and_the_exit_code(aws, shape, approval, by, dev, prod, code):
    from mlops_local.pipeline_run import exit_code

    summary = summarise(aws, two_endpoint_run(aws, shape))

    assert (summary["approval"] or {}).get("status") == approval
    assert (summary["approval"] or {}).get("by") == by
    assert (summary["endpoints"]["dev"] is not None, summary["endpoints"]["prod"] is not None) == (dev, prod)
    if shape in ("gate-rejected", "approval-rejected", "approval-expired"):  # the stages that never ran
        assert summary["stages"][-1] == {"name": "Production", "status": "Skipped", "seconds": 0.0, "actions": []}
    if dev:  # the dev entries kept as before for compatibility
        assert summary["endpoint"] == {"name": "mlops-dev", "status": "InService"}
        assert summary["endpoint_test"] == summary["endpoints"]["dev"]["test"]
        assert summary["endpoints"]["dev"]["model_package_arn"] == summary["model_package_arn"]
    assert exit_code(summary) == code


def test_the_package_served_is_read_from_the_endpoints_model_not_the_stack_output(aws):
    summary = summarise(aws, two_endpoint_run(aws, "prod-serves-another"))

    prod = summary["endpoints"]["prod"]
    assert (prod["name"], prod["status"], prod["model_package_arn"]) == ("mlops-prod", "InService", OLD_PACKAGE)
    assert prod["test"] == {"passed": True, "rows": 10, "rmse": 512.5, "p50_ms": 3.5, "p99_ms": 9.25, "message": ""}
    report = render_report(summary)
    arn = summary["model_package_arn"]
    assert f"- dev mlops-dev serves {arn}; prod mlops-prod serves {OLD_PACKAGE}: NOT the same package" in report


def test_the_report_has_a_deployment_section_and_the_run_says_what_both_serve(aws):
    from mlops_local.pipeline_run import closing_lines

    summary = summarise(aws, two_endpoint_run(aws, "approved-and-deployed"))
    arn = summary["model_package_arn"]

    report = render_report(summary)

    section = report[report.index("## Deployment"):].split("\n\n")[1].splitlines()
    assert section == [
        f"- dev: mlops-dev (InService), serves {arn}; test: passed on 10 records, RMSE 512.50, p50 3.50 ms, "
        "p99 9.25 ms",
        f"- approval Approval/ApproveForProd: Approved by {APPROVER}: metrics reviewed",
        f"- prod: mlops-prod (InService), serves {arn}; test: passed on 10 records, RMSE 512.50, p50 3.50 ms, "
        "p99 9.25 ms",
        f"- dev mlops-dev and prod mlops-prod serve {arn} (this execution's approved package)"]
    assert closing_lines(summary) == [f"dev mlops-dev and prod mlops-prod serve {arn} (this execution's approved "
                                      "package)"]


@pytest.mark.parametrize("shape, line", [
    ("approval-rejected", f"approval Approval/ApproveForProd: Rejected by {APPROVER}: worse than hoped - prod was "
                          "not deployed (exit 4)"),
    ("approval-expired", "approval Approval/ApproveForProd: Expired: Approval expired: no PutApprovalResult answer "
                         "within 7 days (the approval action's timeout) - prod was not deployed (exit 4)"),
], ids=["rejected", "expired"])
def test_a_rejected_approval_ends_the_run_with_who_and_why(aws, shape, line):
    from mlops_local.pipeline_run import closing_lines

    summary = summarise(aws, two_endpoint_run(aws, shape))

    assert closing_lines(summary)[0] == line
    assert closing_lines(summary)[1].endswith("; prod was not deployed by this execution")
    assert "- prod: not deployed by this execution" in render_report(summary)


def test_a_summary_without_the_new_keys_renders_and_exits_as_before():
    """summary.json files written before dev+prod: no endpoints, no approval."""
    from mlops_local.pipeline_run import exit_code

    old = {"pipeline_execution_id": EXECUTION, "status": "Succeeded", "decision": "APPROVED", "threshold": 650.0,
           "stages": [], "timings": {"wall_seconds": 1.0, "job_seconds": 0.0, "orchestration_seconds": 1.0},
           "endpoint": {"name": "mlops-dev", "status": "InService"}, "endpoint_test": {
               "passed": True, "rows": 1, "rmse": 1.0, "p50_ms": 1.0, "p99_ms": 1.0, "message": ""}}
    assert "## Deployment" not in render_report(old)
    assert exit_code(old) == 0


def test_a_model_that_cannot_be_read_leaves_the_status_and_falls_back_to_the_stack_output(aws):
    run = two_endpoint_run(aws, "approved-and-deployed")
    aws[1].delete_model(ModelName="mlops-dev-model")  # e.g. an update replaced it meanwhile

    dev = summarise(aws, run)["endpoints"]["dev"]

    deploy = next(d for d in run["actions"] if d["actionName"] == "DeployEndpoint")
    assert (dev["status"], dev["model_package_arn"]) == ("InService", deploy["output"]["outputVariables"][
        "ModelPackageArn"])


def test_job_seconds_count_each_job_from_its_start_to_its_end():
    """Glue's ExecutionTime is whole seconds: the run's StartedOn -> CompletedOn counts, as the SageMaker
    jobs' start -> end do, so no part of a job is taken for orchestration."""
    from datetime import datetime, timedelta, timezone

    from mlops_local.summary import job_seconds, job_times

    t0 = datetime(2026, 12, 2, tzinfo=timezone.utc)
    answers = {
        "glue": {"get_job_run": {"JobRun": {"StartedOn": t0, "CompletedOn": t0 + timedelta(seconds=12.7),
                                            "ExecutionTime": 12}}},
        "sagemaker": {"describe_training_job": {"TrainingStartTime": t0,
                                                "TrainingEndTime": t0 + timedelta(seconds=8.25)},
                      "describe_processing_job": {"ProcessingStartTime": t0,
                                                  "ProcessingEndTime": t0 + timedelta(seconds=1.5)}},
    }

    class Client:
        def __init__(self, service):
            self.service = service

        def __getattr__(self, operation):
            return lambda **kwargs: answers[self.service][operation]

    found = {"EtlJob": {"GlueJobName": "etl", "JobRunId": "jr_1"}, "TrainingJob": {"TrainingJobName": "t"},
             "EvaluationJob": {"ProcessingJobName": "p"}}
    assert job_seconds(Client, found) == pytest.approx(12.7 + 8.25 + 1.5)
    assert job_times(Client, found) == pytest.approx({"glue": 12.7, "training": 8.25, "processing": 1.5})
    assert job_times(Client, {"EtlJob": found["EtlJob"]}) == pytest.approx({"glue": 12.7})  # stopped after the ETL
    del answers["glue"]["get_job_run"]["JobRun"]["CompletedOn"]  # a run without its end: ExecutionTime
    assert job_seconds(Client, found) == pytest.approx(12 + 8.25 + 1.5)
