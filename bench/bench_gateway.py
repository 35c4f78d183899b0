"""The gateway's request checks: the time they add per request (issue #10: <= 1 ms median).

Two stand-ins run in this process: one as `mlops-local` runs it (every check on, the default) and
one with every check off (`Gateway(validate=False)`, the debugging switch). moto's state lives per
process, so both answer from the same resources. A mix of requests the pipeline makes goes to both
through boto3 clients, interleaved request by request, in alternating order each round, so drift
(other processes, CPU clock) falls on both alike. Per request kind: median and p90 wall time of
the boto3 call with the checks on and off; the added time is median(on) - median(off). Beside it,
each check alone, replayed in-process on the request exactly as the gateway parsed it, so the
table says what the added time is made of.
"""
from __future__ import annotations

import copy
import io
import json
import statistics
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from bench.common import ROOT, main, percentile

NAME = "gateway"
TARGET_MS = 1.0
ON, OFF = "on", "off"
MODEL_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mlops-model:1"
BUCKET, KEY = "mlops-bench-data", "etl/features.json"
CODE_BUCKET = "mlops-bench-code"
STACK_TEMPLATE = {"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}}}


@dataclass(frozen=True)
class Check:
    """One request check of the gateway: the Gateway field that switches it, the method that runs it."""
    name: str
    switch: str
    method: str


# Every check the gateway makes per request; "on" switches them all on, "off" all off. Each one's
# in-process time is replayed from the arguments it was called with (a replay must not grow state:
# the IAM check appends to the access log, so replays() empties it afterwards).
CHECKS = (Check("validation", switch="validate", method="_validate"),
          Check("iam", switch="enforce", method="_authorize"))


@dataclass(frozen=True)
class Kind:
    """A request kind of the mix: a boto3 call, and the error code it answers when that is the point."""
    name: str
    service: str
    call: Callable[[Any], Any]
    error: str | None = None


def deploy_pipeline(aws: Any, workdir: Path) -> dict[str, Any]:
    """templates/pipeline.yaml deployed through the stand-in's CloudFormation (by TemplateURL, as
    deploy.sh sends it), and its pipeline read back as UpdatePipeline takes it: the largest request
    the checks see."""
    from mlops_local.cloudformation.stacks import Stacks
    from mlops_local.runtime import Runtime

    Stacks(Runtime(aws, workdir, source_root=ROOT)).register()
    s3 = aws.client("s3")
    s3.create_bucket(Bucket=CODE_BUCKET)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("lambdas/__init__.py", "")
    s3.put_object(Bucket=CODE_BUCKET, Key="lambdas.zip", Body=archive.getvalue())
    s3.put_object(Bucket=CODE_BUCKET, Key="pipeline.yaml", Body=(ROOT / "templates" / "pipeline.yaml").read_bytes())
    cfn = aws.client("cloudformation")
    cfn.create_stack(StackName="mlops-pipeline", TemplateURL=f"https://s3.amazonaws.com/{CODE_BUCKET}/pipeline.yaml",
                     Capabilities=["CAPABILITY_NAMED_IAM"],
                     Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in
                                 {"ProjectName": "mlops", "LambdaCodeBucket": CODE_BUCKET,
                                  "LambdaCodeKey": "lambdas.zip"}.items()])
    outputs = {o["OutputKey"]: o["OutputValue"] for o in cfn.describe_stacks(StackName="mlops-pipeline")
               ["Stacks"][0].get("Outputs", [])}
    return {"pipeline": aws.client("codepipeline").get_pipeline(name=outputs["PipelineName"])["pipeline"]}


def kinds(definition: dict[str, Any]) -> list[Kind]:
    pipeline = definition["pipeline"]["name"]
    return [
        Kind("sagemaker DescribeTrainingJob, unknown job (the error path)", "sagemaker",
             lambda c: c.describe_training_job(TrainingJobName="mlops-train-unknown"), error="ValidationException"),
        Kind("sagemaker DescribeModel", "sagemaker", lambda c: c.describe_model(ModelName="mlops-model")),
        Kind("glue GetJob", "glue", lambda c: c.get_job(JobName="mlops-bench-etl")),
        Kind("codepipeline GetPipeline", "codepipeline", lambda c: c.get_pipeline(name=pipeline)),
        Kind(f"codepipeline UpdatePipeline, the full definition ({len(json.dumps(definition)) / 1024:.0f} KB)",
             "codepipeline", lambda c: c.update_pipeline(**definition)),
        Kind("cloudformation DescribeStacks (query protocol)", "cloudformation",
             lambda c: c.describe_stacks(StackName="mlops-bench")),
        Kind("s3 HeadObject (REST)", "s3", lambda c: c.head_object(Bucket=BUCKET, Key=KEY)),
    ]


def caller(aws: Any, pipeline_role: str) -> dict[str, str]:
    """The mix is sent as a role session, as the pipeline's workers send theirs: the administrator's
    requests need no policy evaluation and would time nothing. The role's policy is as large as the
    pipeline role's (a dozen statements, conditions among them), the mix's grants last."""
    iam = aws.client("iam")
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                     "Principal": {"Service": "lambda.amazonaws.com"}}]}
    arn = iam.create_role(RoleName="mlops-bench-caller", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    filler = [{"Sid": f"Unrelated{n}", "Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"],
               "Resource": f"arn:aws:s3:::other-bucket-{n}/prefix/*"} for n in range(8)]
    grants = [
        {"Sid": "ReadJobs", "Effect": "Allow", "Action": ["sagemaker:DescribeTrainingJob", "sagemaker:DescribeModel"],
         "Resource": "arn:aws:sagemaker:us-east-1:123456789012:*/mlops-*"},
        {"Sid": "ReadEtl", "Effect": "Allow", "Action": "glue:GetJob",
         "Resource": "arn:aws:glue:us-east-1:123456789012:job/mlops-*"},
        {"Sid": "Pipeline", "Effect": "Allow", "Action": ["codepipeline:GetPipeline", "codepipeline:UpdatePipeline"],
         "Resource": "arn:aws:codepipeline:us-east-1:123456789012:mlops-*"},
        {"Sid": "PassPipelineRole", "Effect": "Allow", "Action": "iam:PassRole", "Resource": pipeline_role,
         "Condition": {"StringEquals": {"iam:PassedToService": "codepipeline.amazonaws.com"}}},
        {"Sid": "Stacks", "Effect": "Allow", "Action": "cloudformation:DescribeStacks",
         "Resource": "arn:aws:cloudformation:us-east-1:123456789012:stack/mlops-*/*"},
        {"Sid": "Data", "Effect": "Allow", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{BUCKET}/etl/*"},
        {"Sid": "NoDelete", "Effect": "Deny", "Action": "s3:DeleteObject", "Resource": "*"}]
    iam.put_role_policy(RoleName="mlops-bench-caller", PolicyName="bench", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [*filler, *grants]}))
    session = aws.client("sts").assume_role(RoleArn=arn, RoleSessionName="bench")["Credentials"]
    return {"aws_access_key_id": session["AccessKeyId"], "aws_secret_access_key": session["SecretAccessKey"],
            "aws_session_token": session["SessionToken"]}


def create_resources(aws: Any, role_arn: str) -> None:
    """What the rest of the mix reads, created once: both stand-ins see it (moto's backends are per process)."""
    aws.client("sagemaker").create_model(ModelName="mlops-model", ExecutionRoleArn=role_arn,
                                         PrimaryContainer={"Image": MODEL_IMAGE,
                                                           "ModelDataUrl": f"s3://{BUCKET}/model/model.tar.gz"})
    aws.client("glue").create_job(Name="mlops-bench-etl", Role=role_arn, GlueVersion="4.0",
                                  Command={"Name": "glueetl", "ScriptLocation": f"s3://{BUCKET}/etl.py",
                                           "PythonVersion": "3"})
    s3 = aws.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"{}" * 512)
    aws.client("cloudformation").create_stack(StackName="mlops-bench", TemplateBody=json.dumps(STACK_TEMPLATE))


def send(kind: Kind, client: Any) -> None:
    """One call; an error is fine only when it is the one the kind is about (never a check's rejection)."""
    from botocore.exceptions import ClientError

    try:
        kind.call(client)
    except ClientError as error:
        if error.response["Error"]["Code"] != kind.error:
            raise RuntimeError(f"{kind.name}: {error}") from None
        return
    if kind.error:
        raise RuntimeError(f"{kind.name}: answered without the {kind.error} it is about")


def timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


# -- through the stand-ins ------------------------------------------------------------------------
def interleaved(mix: list[Kind], clients: dict[str, dict[str, Any]], rounds: int,
                warmup: int) -> tuple[dict[str, dict[str, list[float]]], dict[str, list[float]]]:
    """Seconds per call, by configuration and kind; and each round's whole mix, by configuration."""
    samples: dict[str, dict[str, list[float]]] = {c: {k.name: [] for k in mix} for c in (ON, OFF)}
    totals: dict[str, list[float]] = {ON: [], OFF: []}
    for number in range(warmup + rounds):
        order = (ON, OFF) if number % 2 == 0 else (OFF, ON)
        spent = {ON: 0.0, OFF: 0.0}
        for kind in mix:
            for config in order:
                client = clients[config][kind.service]
                seconds = timed(lambda: send(kind, client))
                spent[config] += seconds
                if number >= warmup:
                    samples[config][kind.name].append(seconds)
        if number >= warmup:
            for config in (ON, OFF):
                totals[config].append(spent[config])
    return samples, totals


# -- the checks alone -----------------------------------------------------------------------------
def _kept(value: Any) -> Any:
    """A check's argument kept for replay: a copy, and a werkzeug request (REST validation reads it) as a
    new request over the same environ and body, since its input stream is read once."""
    from werkzeug.wrappers import Request

    if isinstance(value, Request):
        body = value.get_data(cache=True)
        return Request({**value.environ, "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body))})
    return copy.deepcopy(value)


def recorded_checks(gateway: Any, mix: list[Kind], clients: dict[str, Any]) -> dict[str, dict[str, tuple]]:
    """Per kind and check: the arguments the gateway called the check with (one call of each kind)."""
    seen: dict[str, tuple] = {}

    def recorder(check: Check, original: Callable[..., Any]) -> Callable[..., Any]:
        def record(*args: Any, **kwargs: Any) -> Any:
            seen[check.name] = (tuple(_kept(a) for a in args), {k: _kept(v) for k, v in kwargs.items()})
            return original(*args, **kwargs)
        return record

    for check in CHECKS:  # on the instance only: deleting the attribute restores the class's method
        setattr(gateway, check.method, recorder(check, getattr(gateway, check.method)))
    recorded = {}
    try:
        for kind in mix:
            seen.clear()
            send(kind, clients[kind.service])
            missing = [c.name for c in CHECKS if c.name not in seen]
            if missing:
                raise RuntimeError(f"{kind.name}: the gateway did not run {missing}")
            recorded[kind.name] = dict(seen)
    finally:
        for check in CHECKS:
            delattr(gateway, check.method)
    return recorded


def replayed(gateway: Any, recorded: dict[str, dict[str, tuple]], repeats: int) -> dict[str, dict[str, list[float]]]:
    """Seconds per in-process run of each check on each kind's recorded request."""
    from mlops_local.gateway import AwsError

    def run(method: Callable[..., Any], args: tuple, kwargs: dict[str, Any]) -> None:
        try:
            method(*args, **kwargs)
        except AwsError:  # a rejection costs its time too; the mix has none (send() would have failed)
            pass

    times: dict[str, dict[str, list[float]]] = {}
    for kind, calls in recorded.items():
        times[kind] = {}
        for check in CHECKS:
            args, kwargs = calls[check.name]
            method = getattr(gateway, check.method)
            run(method, args, kwargs)  # warm: models loaded, patterns compiled
            times[kind][check.name] = [timed(lambda: run(method, args, kwargs)) for _ in range(repeats)]
            gateway.access_log.clear()  # the IAM check's replays appended records: drop them
    return times


# -- the benchmark --------------------------------------------------------------------------------
def ms(seconds: float) -> float:
    return seconds * 1000


def run(size: str) -> dict[str, Any]:
    from botocore.config import Config

    from mlops_local.gateway import Gateway, LocalAws

    rounds, warmup, repeats = (300, 10, 300) if size == "full" else (2, 1, 10)
    single = Config(retries={"total_max_attempts": 1})  # one request per call: a retry would double a sample
    stand_ins = {ON: LocalAws(Gateway()),
                 OFF: LocalAws(Gateway(**{check.switch: False for check in CHECKS}))}
    for aws in stand_ins.values():  # start() resets moto: start both before creating anything
        aws.start()
    try:
        with tempfile.TemporaryDirectory() as workdir:
            definition = deploy_pipeline(stand_ins[ON], Path(workdir))
        mix = kinds(definition)
        create_resources(stand_ins[ON], definition["pipeline"]["roleArn"])
        signer = caller(stand_ins[ON], definition["pipeline"]["roleArn"])
        clients = {config: {service: aws.client(service, config=single, **signer)
                            for service in {k.service for k in mix}}
                   for config, aws in stand_ins.items()}
        recorded = recorded_checks(stand_ins[ON].gateway, mix, clients[ON])
        samples, totals = interleaved(mix, clients, rounds, warmup)
        alone = replayed(stand_ins[ON].gateway, recorded, repeats)
    finally:
        for aws in stand_ins.values():
            aws.stop()

    rows: list[dict[str, Any]] = []
    per_kind: dict[str, dict[str, Any]] = {}
    added_by_kind: dict[str, float] = {}
    for kind in mix:
        on, off = samples[ON][kind.name], samples[OFF][kind.name]
        added = ms(statistics.median(on) - statistics.median(off))
        added_by_kind[kind.name] = added
        checks = {c.name: ms(statistics.median(alone[kind.name][c.name])) for c in CHECKS}
        per_kind[kind.name] = {
            "added_ms": round(added, 4),
            "on_ms": {"median": round(ms(statistics.median(on)), 4), "p90": round(ms(percentile(on, 90)), 4)},
            "off_ms": {"median": round(ms(statistics.median(off)), 4), "p90": round(ms(percentile(off, 90)), 4)},
            "checks_alone_ms": {name: {"median": round(value, 4),
                                       "p90": round(ms(percentile(alone[kind.name][name], 90)), 4)}
                                for name, value in checks.items()},
            "samples": len(on)}
        made_of = ", ".join(f"{name} alone {value:.3f} ms" for name, value in checks.items())
        rows.append({"metric": f"added per request: {kind.name}", "value": round(added, 3), "unit": "ms",
                     "target": f"<= {TARGET_MS:g} ms", "met": added <= TARGET_MS,
                     "note": f"median {ms(statistics.median(on)):.2f} ms on / {ms(statistics.median(off)):.2f} "
                             f"off, p90 {ms(percentile(on, 90)):.2f} / {ms(percentile(off, 90)):.2f}; {made_of}"})
    # No "spread" on these rows: they are medians of hundreds of single requests, whose (max - min) says
    # nothing about the median's own noise and would keep the guard from ever flagging them (floor only).
    # The whole mix: each round sends every kind once, so a round's total over the kinds is one
    # "mix request" sample; its median difference per kind is the added time of an average request.
    mix_added = ms(statistics.median(totals[ON]) - statistics.median(totals[OFF])) / len(mix)
    worst = max(added_by_kind.values())
    rows.append({"metric": "added per request: the whole mix", "value": round(mix_added, 3), "unit": "ms",
                 "target": f"<= {TARGET_MS:g} ms", "met": mix_added <= TARGET_MS,
                 "note": f"median of {rounds} rounds' totals, per request; worst kind {worst:.3f} ms"})
    for check in CHECKS:
        mean = statistics.mean(ms(statistics.median(alone[k.name][check.name])) for k in mix)
        largest = max(mix, key=lambda k: statistics.median(alone[k.name][check.name]))
        rows.append({"metric": f"{check.name} alone in-process, mean over the mix", "value": round(mean, 3),
                     "unit": "ms", "note": f"largest: {largest.name} "
                                           f"{ms(statistics.median(alone[largest.name][check.name])):.3f} ms"})
    return {
        "title": "Gateway request checks: time added per request",
        "rows": rows,
        "details": {
            "checks": [c.__dict__ for c in CHECKS],
            "kinds": per_kind,
            "mix_round_ms": {c: {"median": round(ms(statistics.median(t)), 3), "p90": round(ms(percentile(t, 90)), 3)}
                             for c, t in totals.items()},
            "rounds": rounds, "warmup_rounds": warmup, "in_process_repeats": repeats,
            "method": "two LocalAws stand-ins in one process sharing moto's state, checks on (Gateway()) and off "
                      "(every CHECKS switch False); boto3 clients with one attempt per call; per round every kind "
                      "once on each, order on/off alternating by round; added = median(on) - median(off) of the "
                      "boto3 call's wall time; checks alone = the gateway's check method replayed in-process on "
                      "the arguments it was called with for that kind's request",
        },
    }


if __name__ == "__main__":
    sys.exit(main(NAME, run))
