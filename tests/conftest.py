"""Shared fixtures: fake AWS credentials for every test, so nothing can reach a real account."""
from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "diamonds.csv.gz"
DATASET_CONFIG = ROOT / "data" / "diamonds.yaml"


@pytest.fixture(autouse=True)
def aws_credentials(monkeypatch):
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing", "AWS_SECURITY_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)


EVENTS = Path(__file__).resolve().parent / "events"
SECRETS = ("AKIASECRETACCESSKEYID", "sEcReT/aCcEsS/kEy/tHaT/mUsT/nEvEr/LoG",
           "SeSsIoNtOkEnThAtMuStNeVeRaPpEaRiNlOgS")


def load_event(name: str = "codepipeline_job", user_parameters=None, continuation_token=None) -> dict:
    """A raw event from tests/events/, with UserParameters (dict -> JSON) and a token set."""
    import json

    event = json.loads((EVENTS / f"{name}.json").read_text())
    data = event["CodePipeline.job"]["data"]
    if user_parameters is not None:
        data["actionConfiguration"]["configuration"]["UserParameters"] = (
            user_parameters if isinstance(user_parameters, str) else json.dumps(user_parameters))
    if continuation_token is not None:
        data["continuationToken"] = (continuation_token if isinstance(continuation_token, str)
                                     else json.dumps(continuation_token))
    return event
