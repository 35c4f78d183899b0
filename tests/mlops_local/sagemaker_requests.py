"""Training-job requests, ETL-shaped S3 objects and execution roles, shared by the SageMaker job, endpoint and
response-shape tests."""
from __future__ import annotations

import json

import numpy as np

from training.features import FeatureSpec

BUCKET = "sm-data"
EXECUTION = "exec-1"
ETL = f"s3://{BUCKET}/runs/{EXECUTION}/etl"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mlops-training:c0ffee"
ROLE_NAME = "sagemaker"
ROLE = f"arn:aws:iam::123456789012:role/{ROLE_NAME}"
REPOSITORY_ARN = "arn:aws:ecr:us-east-1:123456789012:repository/mlops-training"
TINY = {"epochs": "3", "batch_size": "64", "hidden_units": "8", "learning_rate": "0.01"}


def splits() -> dict[str, bytes]:
    """ETL-shaped objects: CSV part files (target, then feature_names) and features.json."""
    spec = FeatureSpec(target="value", target_transform="log", input_columns=("a", "b"),
                       numeric=(("a", 0.0, 1.0), ("b", 0.0, 1.0)), ordinal=(), categorical=())
    rng = np.random.default_rng(0)
    objects = {"features.json": json.dumps(spec.to_dict()).encode()}
    for split, rows in (("train", 256), ("validation", 64), ("test", 64)):
        x = rng.normal(size=(rows, 2))
        y = np.exp(3.0 + 0.5 * x[:, 0] - 0.3 * x[:, 1])
        lines = ["value,a,b"] + [",".join(repr(float(v)) for v in row) for row in np.column_stack([y, x])]
        objects[f"{split}/part-00000.csv"] = ("\n".join(lines) + "\n").encode()
        objects[f"{split}/_SUCCESS"] = b""
    return objects


def channel(name: str, uri: str) -> dict:
    return {"ChannelName": name, "ContentType": "text/csv",
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": uri,
                                            "S3DataDistributionType": "FullyReplicated"}}}


def training_request(name: str, channels=("train", "validation", "features"), image: str = IMAGE,
                     hyperparameters=None) -> dict:
    uris = {"train": f"{ETL}/train/", "validation": f"{ETL}/validation", "features": f"{ETL}/features.json"}
    return {"TrainingJobName": name,
            "AlgorithmSpecification": {"TrainingImage": image, "TrainingInputMode": "File"},
            "RoleArn": ROLE, "HyperParameters": hyperparameters or TINY,
            "InputDataConfig": [channel(c, uris[c]) for c in channels],
            "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/runs/{EXECUTION}/training/"},
            "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 10},
            "StoppingCondition": {"MaxRuntimeInSeconds": 600}}


# -- execution roles ------------------------------------------------------------------------------
def role_session_arn(role_name: str) -> str:
    """The principal SageMaker's staging and pulls are made as (session name "SageMaker")."""
    return f"arn:aws:sts::123456789012:assumed-role/{role_name}/SageMaker"


def execution_statements(*buckets: str, without: tuple[str, ...] = (), volume_key: str | None = None) -> list[dict]:
    """What a job or model needs of its role here: list, read and write the buckets (BUCKET when none is
    named), pull the training image, grant `volume_key` to the job's volume (when given); `without` leaves
    actions out (a statement left empty goes)."""
    buckets = buckets or (BUCKET,)
    grant = [{"Sid": "GrantVolumeKey", "Action": ["kms:CreateGrant"], "Resource": volume_key,
              "Condition": {"Bool": {"kms:GrantIsForAWSResource": "true"}}}] if volume_key else []
    statements = [
        *grant,
        {"Sid": "List", "Action": ["s3:ListBucket"], "Resource": [f"arn:aws:s3:::{b}" for b in buckets]},
        {"Sid": "ReadWrite", "Action": ["s3:GetObject", "s3:PutObject"],
         "Resource": [f"arn:aws:s3:::{b}/*" for b in buckets]},
        {"Sid": "Token", "Action": ["ecr:GetAuthorizationToken"], "Resource": "*"},
        {"Sid": "Pull", "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"], "Resource": REPOSITORY_ARN}]
    kept = [{**s, "Effect": "Allow", "Action": [a for a in s["Action"] if a not in without]} for s in statements]
    return [s for s in kept if s["Action"]]


def create_role(iam, name: str, statements: list[dict], service: str = "sagemaker.amazonaws.com") -> str:
    """A role that `service` may assume, with one inline policy of `statements`; returns its ARN."""
    trust = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}]}
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    if statements:
        iam.put_role_policy(RoleName=name, PolicyName="access",
                            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": statements}))
    return arn
