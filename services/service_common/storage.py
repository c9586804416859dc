"""S3 (MinIO) through boto3: the client factory and the readiness probe."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

from service_common.settings import StorageSettings


def make_client(settings: StorageSettings) -> Any:
    """A boto3 S3 client for MinIO: path-style addressing (bucket names are not DNS names in the
    cluster), short timeouts so readiness answers in time, and boto3's standard retries."""
    return boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint,
        aws_access_key_id=settings.aws_access_key_id,
        aws_secret_access_key=settings.aws_secret_access_key.get_secret_value(),
        region_name=settings.aws_region,
        config=Config(
            s3={"addressing_style": "path"},
            connect_timeout=2,
            read_timeout=30,
            retries={"max_attempts": 3, "mode": "standard"},
            signature_version="s3v4",
        ),
    )


def probe_bucket(client: Any, bucket: str) -> str:
    """Readiness: the bucket answers a list with our keys (a read-only user may not HEAD every
    bucket policy, but it may list what it reads)."""
    client.list_objects_v2(Bucket=bucket, MaxKeys=1)
    return f"bucket {bucket} answers"
