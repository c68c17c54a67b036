"""The benchmark's cost arithmetic: naming moto's requests, pricing them, steady state."""

from __future__ import annotations

import pytest

from bench import measure, prices
from bench.motocount import s3_operation, sqs_operation


@pytest.mark.parametrize(
    ("method", "path", "query", "headers", "expected"),
    [
        ("GET", "/uploads/a/b.jpg.bin", "", {}, "GetObject"),
        ("GET", "/uploads/a/b.jpg.bin", "versionId=x", {}, "GetObject"),
        ("HEAD", "/uploads/a.jpg", "", {}, "HeadObject"),
        ("GET", "/uploads/a.jpg", "tagging=", {}, "GetObjectTagging"),
        ("PUT", "/uploads/a.jpg", "tagging&versionId=x", {}, "PutObjectTagging"),
        ("PUT", "/uploads/a.jpg", "", {}, "PutObject"),
        ("PUT", "/uploads/a.jpg", "", {"x-amz-copy-source": "/uploads/b"}, "CopyObject"),
        ("GET", "/uploads", "list-type=2&prefix=a", {}, "ListObjectsV2"),
        ("DELETE", "/uploads/a.jpg", "", {}, "DeleteObject"),
    ],
)
def test_s3_requests_are_named_by_operation(
    method: str, path: str, query: str, headers: dict[str, str], expected: str
) -> None:
    assert s3_operation(method, path, query, headers) == expected


def test_sqs_requests_are_named_by_target_or_action() -> None:
    assert sqs_operation({"x-amz-target": "AmazonSQS.ReceiveMessage"}, "", b"") == "ReceiveMessage"
    assert sqs_operation({}, "", b"Action=DeleteMessageBatch&QueueUrl=x") == "DeleteMessageBatch"
    assert sqs_operation({}, "tagging=", b"") is None


def test_cost_per_million_hashes_at_list_prices() -> None:
    per_hash = {
        "s3:GetObject": 1.0,
        "s3:GetObjectTagging": 1.0,
        "s3:PutObjectTagging": 1.0,
        "sqs:ReceiveMessage": 0.1,
        "sqs:DeleteMessageBatch": 0.1,
        "s3:DeleteObject": 1.0,
    }
    # 0.40 + 0.40 + 5.00 + 0.2 × 0.40; a DELETE is free.
    assert prices.cost_per_million(per_hash) == pytest.approx(5.88)
    assert not prices.is_paid("s3:DeleteObject")
    assert prices.tags_per_million_per_month(1.0) == pytest.approx(1.0)


def test_steady_state_leaves_out_the_first_second() -> None:
    # A burst of 10 requests at t=0, then one every 0.1 s for 30 s: 10 requests a second.
    requests = [(0.0, 5)] * 10 + [(1.0 + i / 10, 5) for i in range(300)]
    steady = measure.steady_state(10, requests)
    assert steady["requests"] == 300
    assert steady["utilisation"] == pytest.approx(1.0, abs=0.01)
    assert steady["enough"] is True
    # The burst-credited figure counts the burst in its ceiling.
    assert measure.utilisation(310 * 5, 10, 30.9) < 1.0
