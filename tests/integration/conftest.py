"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from moto import mock_aws

from edgematch.config.settings import Settings
from edgematch.infra.storage import make_s3_client

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

#: The upload bucket of the ``s3`` fixture.
UPLOADS = "uploads"


@pytest.fixture
def s3(aws_env: None) -> Iterator[S3Client]:
    """In-process moto S3 with a versioned upload bucket (``UPLOADS``)."""
    with mock_aws():
        client = make_s3_client(Settings())
        client.create_bucket(Bucket=UPLOADS)
        client.put_bucket_versioning(Bucket=UPLOADS, VersioningConfiguration={"Status": "Enabled"})
        yield client
