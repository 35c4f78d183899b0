"""CodeCommit operations moto lacks, served on the gateway over moto's repository records.

ListRepositories (CodeCommit API Reference, ListRepositories): RepositoryNameIdPair per repository,
sorted by `sortBy` (repositoryName | lastModifiedDate) in `order` (ascending | descending), pages of
1,000 with an opaque nextToken; a token that is not one of ours is InvalidContinuationTokenException.
"""
from __future__ import annotations

from typing import Any

from mlops_local.gateway import AwsError, Gateway, account_id, paginate
from mlops_local.moto_access import backend

PREFIX = "CodeCommit_20150413."
PAGE = 1000  # "Batch sizes are 1,000 for list repository operations"


class CodeCommitApi:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def register(self) -> "CodeCommitApi":
        self.gateway.operation(PREFIX + "ListRepositories", self.list_repositories)
        return self

    def list_repositories(self, params: dict[str, Any]) -> dict[str, Any]:
        sort_by, order = params.get("sortBy") or "repositoryName", params.get("order") or "ascending"
        if sort_by not in ("repositoryName", "lastModifiedDate"):
            raise AwsError("InvalidSortByException", f"sortBy {sort_by} is not repositoryName or lastModifiedDate")
        if order not in ("ascending", "descending"):
            raise AwsError("InvalidOrderException", f"order {order} is not ascending or descending")
        repositories = backend("codecommit", account_id(), self.gateway.region).repositories
        records = sorted((repository.repository_metadata for repository in repositories.values()),
                         key=lambda meta: (str(meta[sort_by]), meta["repositoryName"]),
                         reverse=order == "descending")
        try:
            page, token = paginate([{"repositoryName": meta["repositoryName"], "repositoryId": meta["repositoryId"]}
                                    for meta in records], params, token="nextToken", size="", default_size=PAGE)
        except AwsError:
            raise AwsError("InvalidContinuationTokenException", "the nextToken is not valid") from None
        return {"repositories": page, **({"nextToken": token} if token else {})}
