"""What the test doubles themselves allow, measured in the same run as the pipeline.

Two figures put the end-to-end rows in proportion:

* **moto's SQS drain rate**: one-record messages received (10 at a time) and deleted as
  fast as one client can, from a queue holding as many as a saturated run makes wait. No
  pipeline fed by this moto can take events faster, whatever its own speed.
* **boto3's client CPU per S3 call** against moto (GET of a 924-byte object, GET and PUT of
  its tags): the floor under edgematch's CPU per hash, which makes those calls for every
  hash (the tag GET and PUT keep the platform's own tags; see infra/storage.py).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from typing import Any

from bench.stack import HASH_BYTES, Stack

RECORD = {
    "eventSource": "aws:s3",
    "eventName": "ObjectCreated:Put",
    "s3": {"bucket": {"name": "uploads"}, "object": {"key": "h/" + "k" * 40 + ".jpg.bin"}},
}


def sqs_drain_rate(stack: Stack, messages: int) -> dict[str, Any]:
    """Messages per second one client receives and deletes from a queue of ``messages``."""
    sqs = stack.pipe.sqs()
    url = sqs.create_queue(QueueName=f"harness-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    body = json.dumps({"Records": [RECORD]})
    try:
        for start in range(0, messages, 10):
            entries = [
                {"Id": str(i), "MessageBody": body} for i in range(min(10, messages - start))
            ]
            sqs.send_message_batch(QueueUrl=url, Entries=entries)
        drained = 0
        started = time.perf_counter()
        while True:
            got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
            if not got:
                break
            sqs.delete_message_batch(
                QueueUrl=url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)
                ],
            )
            drained += len(got)
        seconds = time.perf_counter() - started
    finally:
        sqs.delete_queue(QueueUrl=url)
    return {
        "messages": drained,
        "seconds": round(seconds, 3),
        "messages_per_s": round(drained / seconds, 1) if seconds else 0.0,
    }


def boto3_cpu_per_call(stack: Stack, calls: int = 100) -> dict[str, float]:
    """Client CPU milliseconds per S3 call of each kind edgematch makes per hash."""
    s3 = stack.pipe.s3()
    bucket = stack.pipe.bucket
    keys = [f"harness/{i}.jpg" for i in range(calls)]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=os.urandom(HASH_BYTES), Tagging="a=b")

    def cpu_ms(call: Any) -> float:
        started = time.process_time()
        for key in keys:
            call(key)
        return round(1000 * (time.process_time() - started) / calls, 3)

    figures = {
        "get_object": cpu_ms(lambda k: s3.get_object(Bucket=bucket, Key=k)["Body"].read()),
        "get_object_tagging": cpu_ms(lambda k: s3.get_object_tagging(Bucket=bucket, Key=k)),
        "put_object_tagging": cpu_ms(
            lambda k: s3.put_object_tagging(
                Bucket=bucket, Key=k, Tagging={"TagSet": [{"Key": "a", "Value": "b"}]}
            )
        ),
    }
    figures["per_hash_floor"] = round(sum(figures.values()), 3)
    return figures
