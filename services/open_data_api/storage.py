"""Published datasets: the objects of the ``open-data`` bucket."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from botocore.exceptions import ClientError


class NotFound(Exception):
    pass


class Datasets:
    def __init__(self, s3: Any, bucket: str) -> None:
        self._s3 = s3
        self.bucket = bucket

    def list(self, prefix: str = "", limit: int = 1000) -> list[dict[str, Any]]:
        paginator = self._s3.get_paginator("list_objects_v2")
        items: list[dict[str, Any]] = []
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for entry in page.get("Contents", []):
                items.append({"name": entry["Key"], "size": entry["Size"], "modified": entry["LastModified"]})
                if len(items) >= limit:
                    return items
        return items

    def open(self, name: str) -> tuple[Iterator[bytes], str, int]:
        """(chunks, content type, length) of one dataset."""
        try:
            response = self._s3.get_object(Bucket=self.bucket, Key=name)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}:
                raise NotFound(name) from error
            raise
        body = response["Body"]
        return (
            body.iter_chunks(1 << 16),
            response.get("ContentType", "application/octet-stream"),
            response["ContentLength"],
        )
