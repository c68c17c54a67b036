"""Unit tests for edgematch.pipeline.events: every message shape, key decoding, refusals."""

from __future__ import annotations

import copy
import json
from typing import Any
from urllib.parse import quote_plus

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgematch.errors import BadInput
from edgematch.infra.s3text import key_problem
from edgematch.pipeline.events import (
    ObjectCreated,
    ParsedMessage,
    SkippedRecord,
    parse_message,
    parse_s3_uri,
    select,
)

# --- realistic bodies --------------------------------------------------------------------

# The record of the AWS documentation's example (notification-content-structure.html).
AWS_RECORD: dict[str, Any] = {
    "eventVersion": "2.1",
    "eventSource": "aws:s3",
    "awsRegion": "us-west-2",
    "eventTime": "1970-01-01T00:00:00.000Z",
    "eventName": "ObjectCreated:Put",
    "userIdentity": {"principalId": "AIDAJDPLRKLG7UEXAMPLE"},
    "requestParameters": {"sourceIPAddress": "172.16.0.1"},
    "responseElements": {
        "x-amz-request-id": "C3D13FE58DE4C810",
        "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD",
    },
    "s3": {
        "s3SchemaVersion": "1.0",
        "configurationId": "testConfigRule",
        "bucket": {
            "name": "amzn-s3-demo-bucket",
            "ownerIdentity": {"principalId": "A3NL1KOZZKExample"},
            "arn": "arn:aws:s3:::amzn-s3-demo-bucket",
        },
        "object": {
            "key": "photos/HappyFace.jpg.bin",
            "size": 1024,
            "eTag": "d41d8cd98f00b204e9800998ecf8427e",
            "versionId": "096fKKXTRTtl3on89fVO.nfljtsv6qko",
            "sequencer": "0055AED6DCD90281E5",
        },
    },
}

# Exactly what S3 sends when a notification configuration is saved.
S3_TEST_EVENT = (
    '{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2014-10-13T15:57:02.089Z",'
    '"Bucket":"amzn-s3-demo-bucket","RequestId":"5582815E1AEA5ADF",'
    '"HostId":"8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE"}'
)

# What moto 5 puts on the queue: no versionId, no sequencer, '/' encoded as %2F.
MOTO_BODY = (
    '{"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",'
    ' "eventTime": "2024-05-01T10:00:00.000Z", "eventName": "ObjectCreated:Put",'
    ' "s3": {"s3SchemaVersion": "1.0", "configurationId": "edgematch",'
    ' "bucket": {"name": "uploads", "arn": "arn:aws:s3:::uploads"},'
    ' "object": {"key": "photos%2Fmy+cat+%2B+dog.jpg.bin", "size": 144,'
    ' "eTag": "5d41402abc4b2a76b9719d911017c592"}}}]}'
)

EVENTBRIDGE_EVENT: dict[str, Any] = {
    "version": "0",
    "id": "17793124-05d4-b198-2fde-7ededc63b103",
    "detail-type": "Object Created",
    "source": "aws.s3",
    "account": "111122223333",
    "time": "2021-11-12T00:00:00Z",
    "region": "ca-central-1",
    "resources": ["arn:aws:s3:::amzn-s3-demo-bucket1"],
    "detail": {
        "version": "0",
        "bucket": {"name": "amzn-s3-demo-bucket1"},
        "object": {
            "key": "example-key.bin",
            "size": 5,
            "etag": "b1946ac92492d2347c6235b4d2611184",
            "version-id": "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e",
            "sequencer": "617f08299329d189",
        },
        "request-id": "N4N7GDK58NMKJ12R",
        "requester": "123456789012",
        "source-ip-address": "1.2.3.4",
        "reason": "PutObject",
    },
}

MINIO_BODY: dict[str, Any] = {
    "EventName": "s3:ObjectCreated:Put",
    "Key": "uploads/photos/cat.jpg.bin",
    "Records": [
        {
            "eventVersion": "2.0",
            "eventSource": "minio:s3",
            "awsRegion": "",
            "eventTime": "2024-05-01T10:00:00.123Z",
            "eventName": "s3:ObjectCreated:Put",
            "userIdentity": {"principalId": "minioadmin"},
            "requestParameters": {
                "principalId": "minioadmin",
                "region": "",
                "sourceIPAddress": "::1",
            },
            "responseElements": {
                "x-amz-request-id": "17C8A3B5E2D0F4A1",
                "x-minio-origin-endpoint": "",
            },
            "s3": {
                "s3SchemaVersion": "1.0",
                "configurationId": "Config",
                "bucket": {
                    "name": "uploads",
                    "ownerIdentity": {"principalId": "minioadmin"},
                    "arn": "arn:aws:s3:::uploads",
                },
                "object": {
                    "key": "photos%2Fcat.jpg.bin",
                    "size": 144,
                    "eTag": "5d41402abc4b2a76b9719d911017c592",
                    "contentType": "application/octet-stream",
                    "userMetadata": {"content-type": "application/octet-stream"},
                    "sequencer": "17C8A3B5E2F1C9B2",
                },
            },
            "source": {"host": "::1", "port": "", "userAgent": "MinIO (linux; amd64) minio-go/v7"},
        }
    ],
}


def record(key: str = "photos/cat.jpg.bin", **object_fields: Any) -> dict[str, Any]:
    """An AWS record for ``key`` (already encoded), with object fields overridden."""
    rec = copy.deepcopy(AWS_RECORD)
    rec["s3"]["object"]["key"] = key
    rec["s3"]["object"].update(object_fields)
    return rec


def body(*records: dict[str, Any]) -> str:
    return json.dumps({"Records": list(records)})


def sns(message: str) -> str:
    return json.dumps(
        {
            "Type": "Notification",
            "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
            "TopicArn": "arn:aws:sns:us-west-2:123456789012:edgematch",
            "Subject": "Amazon S3 Notification",
            "Message": message,
            "Timestamp": "2024-05-01T10:00:00.000Z",
            "SignatureVersion": "1",
            "Signature": "EXAMPLEpH+DcEwjAPg8O9mY8dReBSwksfg2S7WKQcikcNKWLQjwu6A4VbeS0Q=",
            "SigningCertURL": "https://sns.us-west-2.amazonaws.com/SimpleNotificationService-f3ecfb7224c7233fe7bb5f59f96de52f.pem",
            "UnsubscribeURL": "https://sns.us-west-2.amazonaws.com/?Action=Unsubscribe",
        }
    )


def only(parsed: ParsedMessage) -> ObjectCreated:
    assert len(parsed.objects) == 1, parsed
    return parsed.objects[0]


# --- accepted shapes -----------------------------------------------------------------------


def test_aws_documentation_record_is_parsed_field_by_field() -> None:
    """The AWS example record yields every field, source "s3", nothing skipped."""
    parsed = parse_message(body(AWS_RECORD))
    assert parsed.skipped == ()
    assert only(parsed) == ObjectCreated(
        bucket="amzn-s3-demo-bucket",
        key="photos/HappyFace.jpg.bin",
        version_id="096fKKXTRTtl3on89fVO.nfljtsv6qko",
        etag="d41d8cd98f00b204e9800998ecf8427e",
        size=1024,
        event_time="1970-01-01T00:00:00.000Z",
        event_name="ObjectCreated:Put",
        sequencer="0055AED6DCD90281E5",
        source="s3",
    )


def test_bytes_body_is_accepted() -> None:
    """A UTF-8 bytes body parses like the same text."""
    assert parse_message(body(AWS_RECORD).encode()) == parse_message(body(AWS_RECORD))


@pytest.mark.parametrize(
    "event_name",
    [
        "ObjectCreated:Put",
        "ObjectCreated:Post",
        "ObjectCreated:Copy",
        "ObjectCreated:CompleteMultipartUpload",
        "s3:ObjectCreated:Put",
    ],
)
def test_every_creating_event_name_is_accepted(event_name: str) -> None:
    """Put, Post, Copy, CompleteMultipartUpload and MinIO's s3: prefix are all accepted."""
    rec = record()
    rec["eventName"] = event_name
    assert only(parse_message(body(rec))).event_name == event_name.removeprefix("s3:")


def test_moto_record_without_version_or_sequencer() -> None:
    """A moto record: %2F and + decoded, %2B kept as '+', no version id or sequencer."""
    obj = only(parse_message(MOTO_BODY))
    assert obj.bucket == "uploads"
    assert obj.key == "photos/my cat + dog.jpg.bin"
    assert obj.version_id is None
    assert obj.sequencer is None
    assert obj.size == 144
    assert (
        obj.identity
        == "uploads\x00photos/my cat + dog.jpg.bin\x00etag:5d41402abc4b2a76b9719d911017c592"
    )


def test_sns_wrapped_notification() -> None:
    """An S3 notification inside an SNS envelope is unwrapped and marked source "sns"."""
    obj = only(parse_message(sns(body(AWS_RECORD))))
    assert obj.key == "photos/HappyFace.jpg.bin"
    assert obj.version_id == "096fKKXTRTtl3on89fVO.nfljtsv6qko"
    assert obj.source == "sns"


def test_eventbridge_object_created() -> None:
    """EventBridge Object Created maps etag, version-id, time and reason PutObject."""
    obj = only(parse_message(json.dumps(EVENTBRIDGE_EVENT)))
    assert obj == ObjectCreated(
        bucket="amzn-s3-demo-bucket1",
        key="example-key.bin",
        version_id="IYV3p45BT0ac8hjHg1houSdS1a.Mro8e",
        etag="b1946ac92492d2347c6235b4d2611184",
        size=5,
        event_time="2021-11-12T00:00:00Z",
        event_name="ObjectCreated:Put",
        sequencer="617f08299329d189",
        source="eventbridge",
    )


def test_eventbridge_key_is_decoded_like_notification_keys() -> None:
    """EventBridge keys go through the same unquote_plus as notification keys."""
    event = copy.deepcopy(EVENTBRIDGE_EVENT)
    event["detail"]["object"]["key"] = "a+b%2Bc.bin"
    assert only(parse_message(json.dumps(event))).key == "a b+c.bin"


def test_eventbridge_moto_epoch_time_and_etag_spelling() -> None:
    """moto's EventBridge emulation (epoch time, "eTag") still parses."""
    event = copy.deepcopy(EVENTBRIDGE_EVENT)
    event["time"] = 0
    obj_fields = event["detail"]["object"]
    obj_fields["eTag"] = obj_fields.pop("etag")
    obj_fields["version-id"] = None
    obj = only(parse_message(json.dumps(event)))
    assert obj.event_time == "1970-01-01T00:00:00+00:00"
    assert obj.etag == "b1946ac92492d2347c6235b4d2611184"
    assert obj.version_id is None


def test_eventbridge_other_detail_type_is_skipped() -> None:
    """EventBridge Object Deleted is skipped as not_object_created, not an error."""
    event = copy.deepcopy(EVENTBRIDGE_EVENT)
    event["detail-type"] = "Object Deleted"
    parsed = parse_message(json.dumps(event))
    assert parsed.objects == ()
    assert [s.reason for s in parsed.skipped] == ["not_object_created"]


def test_minio_record() -> None:
    """A MinIO body (top-level EventName/Key, eventSource minio:s3) parses, source "minio"."""
    obj = only(parse_message(json.dumps(MINIO_BODY)))
    assert obj.bucket == "uploads"
    assert obj.key == "photos/cat.jpg.bin"
    assert obj.event_name == "ObjectCreated:Put"
    assert obj.source == "minio"


def test_ceph_record() -> None:
    """eventSource ceph:s3 is accepted and reported as source "ceph"."""
    rec = record()
    rec["eventSource"] = "ceph:s3"
    assert only(parse_message(body(rec))).source == "ceph"


def test_minio_put_tagging_is_not_a_creation() -> None:
    """MinIO's s3:ObjectCreated:PutTagging changes no bytes and is skipped."""
    minio = copy.deepcopy(MINIO_BODY)
    minio["Records"][0]["eventName"] = "s3:ObjectCreated:PutTagging"
    parsed = parse_message(json.dumps(minio))
    assert parsed.objects == ()
    assert parsed.skipped[0].reason == "not_object_created"


# --- test events and other event types --------------------------------------------------------


def test_s3_test_event_is_skipped() -> None:
    """The exact s3:TestEvent body S3 sends is skipped with reason test_event."""
    parsed = parse_message(S3_TEST_EVENT)
    assert parsed.objects == ()
    assert parsed.skipped == (
        SkippedRecord("test_event", "s3:TestEvent for bucket 'amzn-s3-demo-bucket'"),
    )


def test_s3_test_event_inside_sns_is_skipped() -> None:
    """s3:TestEvent delivered through SNS is skipped too."""
    parsed = parse_message(sns(S3_TEST_EVENT))
    assert [s.reason for s in parsed.skipped] == ["test_event"]


def test_sns_subscription_confirmation_is_skipped() -> None:
    """An SNS SubscriptionConfirmation is a control message, skipped not failed."""
    message = json.dumps(
        {
            "Type": "SubscriptionConfirmation",
            "TopicArn": "arn:aws:sns:us-west-2:123456789012:edgematch",
            "Message": "You have chosen to subscribe to the topic ...",
            "Token": "2336412f37f",
        }
    )
    parsed = parse_message(message)
    assert parsed.objects == ()
    assert parsed.skipped[0].reason == "not_object_created"


def test_object_removed_is_skipped() -> None:
    """ObjectRemoved:Delete is skipped with reason not_object_created."""
    rec = record()
    rec["eventName"] = "ObjectRemoved:Delete"
    parsed = parse_message(body(rec))
    assert parsed.objects == ()
    assert parsed.skipped == (
        SkippedRecord("not_object_created", "eventName 'ObjectRemoved:Delete'"),
    )


# --- keys --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoded", "decoded"),
    [
        ("my+photo.jpg.bin", "my photo.jpg.bin"),
        ("a%2Bb.bin", "a+b.bin"),
        ("caf%C3%A9%2F%E7%8C%AB.bin", "café/猫.bin"),
        ("photos/2024/cat.bin", "photos/2024/cat.bin"),
        ("100%25.bin", "100%.bin"),
        ("..foo/bar..baz.bin", "..foo/bar..baz.bin"),
    ],
)
def test_keys_are_url_decoded(encoded: str, decoded: str) -> None:
    """Keys are decoded with unquote_plus: '+' is a space, %2B a plus, UTF-8 escapes."""
    assert only(parse_message(body(record(encoded)))).key == decoded


@pytest.mark.parametrize(
    ("encoded", "why"),
    [
        ("", "empty key"),
        ("..%2Fsecret.bin", "path segment"),
        ("photos/../secret.bin", "path segment"),
        ("photos/./cat.bin", "path segment"),
        ("photos%2F..", "path segment"),
        ("..", "path segment"),
        ("photos%5C..%5Csecret.bin", "path segment"),
        ("a%00b.bin", "NUL"),
        ("a" * 1025, "over the S3 limit of 1024"),
        ("%C3%A9" * 513, "1026 bytes"),
        ("%FF%FE.bin", "not valid percent-encoded UTF-8"),
    ],
)
def test_refused_keys_raise_bad_input(encoded: str, why: str) -> None:
    """Empty, traversal, NUL, over-long and non-UTF-8 keys make a lone record BadInput."""
    with pytest.raises(BadInput, match=why):
        parse_message(body(record(encoded)))


def test_key_problem_accepts_ordinary_keys() -> None:
    """key_problem says nothing about ordinary keys, dotted names, or 1024-byte keys."""
    assert key_problem("photos/cat.jpg.bin") is None
    assert key_problem(".hidden/.bin") is None
    assert key_problem("x" * 1024) is None
    assert key_problem("a\ud800") == "key is not valid UTF-8"


# --- ETag and identity ---------------------------------------------------------------------


def test_etag_quotes_are_stripped() -> None:
    """A quoted ETag ("abc") comes back without quotes; an empty one becomes None."""
    assert only(parse_message(body(record(eTag='"abc-2"')))).etag == "abc-2"
    assert only(parse_message(body(record(eTag='""')))).etag is None


def test_identity_prefers_version_id() -> None:
    """identity uses the version id when there is one, the ETag only without it."""
    versioned = only(parse_message(body(record("k.bin", versionId="v1", eTag="e1"))))
    unversioned = only(parse_message(body(record("k.bin", versionId=None, eTag="e1"))))
    bare = only(parse_message(body(record("k.bin", versionId=None, eTag=None))))
    assert versioned.identity == "amzn-s3-demo-bucket\x00k.bin\x00v1"
    assert unversioned.identity == "amzn-s3-demo-bucket\x00k.bin\x00etag:e1"
    assert bare.identity == "amzn-s3-demo-bucket\x00k.bin\x00unversioned"


def test_null_version_id_is_treated_as_unversioned() -> None:
    """versionId "null" (versioning suspended) falls back to the ETag identity."""
    obj = only(parse_message(body(record("k.bin", versionId="null", eTag="e1"))))
    assert obj.version_id is None
    assert obj.identity.endswith("\x00etag:e1")


# --- malformed input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("not json at all", "not JSON"),
        (b"\xff\xfe{}", "not UTF-8"),
        ("", "empty message"),
        ("   ", "empty message"),
        ("[1, 2]", "JSON array, not an object"),
        ('"Records"', "JSON string"),
        ('{"hello": "world"}', "not an S3 notification"),
        ('{"Records": {}}', "Records is a JSON object, not a list"),
        ('{"Records": []}', "Records is empty"),
        ('{"Records": [42]}', "not an object"),
        ('{"Type": "Notification", "Message": {"Records": []}}', "Message is a JSON object"),
        ('{"Type": "Notification", "Message": "nope"}', "SNS Message is not JSON"),
        ("[" * 100_000 + "]" * 100_000, "too deeply nested"),
    ],
)
def test_unusable_messages_raise_bad_input(raw: str | bytes, why: str) -> None:
    """Non-JSON, non-UTF-8 and wrongly shaped messages raise BadInput with a reason."""
    with pytest.raises(BadInput, match=why):
        parse_message(raw)


@pytest.mark.parametrize(
    ("mutate", "why"),
    [
        (lambda r: r["s3"].pop("bucket"), "bucket is missing"),
        (lambda r: r["s3"]["object"].pop("key"), "key is missing"),
        (lambda r: r["s3"]["bucket"].update(name=7), "name is a JSON number"),
        (lambda r: r["s3"]["object"].update(key=["a"]), "key is a JSON array"),
        (lambda r: r["s3"]["object"].update(size="12"), "size is not a non-negative"),
        (lambda r: r["s3"]["object"].update(size=True), "size is not a non-negative"),
        (lambda r: r["s3"]["object"].update(eTag=5), "eTag is a JSON number"),
        (lambda r: r.pop("eventSource"), "eventSource is missing"),
        (lambda r: r.update(eventSource="aws:sqs"), "not an S3 source"),
        (lambda r: r.pop("s3"), "s3 is missing"),
        (lambda r: r["s3"]["bucket"].update(name="a/b"), "forbidden characters"),
    ],
)
def test_wrong_record_shapes_raise_bad_input(mutate: Any, why: str) -> None:
    """A lone record with a missing bucket or key, or wrong types, raises BadInput."""
    rec = record()
    mutate(rec)
    with pytest.raises(BadInput, match=why):
        parse_message(body(rec))


def test_oversize_message_refused_before_parsing() -> None:
    """A body over max_bytes is refused, by size, not by a JSON error."""
    big = body(record("a" * 200 + ".bin"))
    with pytest.raises(BadInput, match="over the limit of 100"):
        parse_message(big, max_bytes=100)
    with pytest.raises(BadInput, match=r"is \d+ bytes, over the limit of 100"):
        parse_message(big.encode(), max_bytes=100)
    # Not JSON at all, but oversize wins: proof that size is checked first.
    with pytest.raises(BadInput, match="over the limit"):
        parse_message("x" * 300_000)


def test_multibyte_text_counts_bytes_not_characters() -> None:
    """A str of 60 characters but 180 UTF-8 bytes is over a 100-byte limit."""
    with pytest.raises(BadInput, match="180 bytes"):
        parse_message("猫" * 60, max_bytes=100)


def test_error_messages_do_not_echo_the_body() -> None:
    """A BadInput message quotes at most a short piece of a long input."""
    secret = "s" * 5000
    rec = record()
    rec["eventSource"] = secret
    with pytest.raises(BadInput) as info:
        parse_message(body(rec))
    assert len(str(info.value)) < 150


def test_multi_record_with_one_bad_record_keeps_the_good_ones() -> None:
    """Good records survive; the bad one is a bad_record skip naming its index."""
    bad = record()
    del bad["s3"]["object"]["key"]
    removed = record("gone.bin")
    removed["eventName"] = "ObjectRemoved:Delete"
    parsed = parse_message(body(record("one.bin"), bad, record("two%2Fthree.bin"), removed))
    assert [o.key for o in parsed.objects] == ["one.bin", "two/three.bin"]
    assert [s.reason for s in parsed.skipped] == ["bad_record", "not_object_created"]
    assert parsed.skipped[0].detail.startswith("record 1: ")


def test_only_bad_records_raise_and_count_them() -> None:
    """Every record bad: the message is unusable and the reason counts the rest."""
    with pytest.raises(BadInput, match=r"record 0: .*\(and 1 more bad records\)"):
        parse_message(body(record(""), record("..")))


def test_bad_records_beside_a_skip_do_not_raise() -> None:
    """A bad record beside a readable ObjectRemoved record is returned, not raised."""
    removed = record()
    removed["eventName"] = "ObjectRemoved:Delete"
    parsed = parse_message(body(record(".."), removed))
    assert [s.reason for s in parsed.skipped] == ["bad_record", "not_object_created"]


# --- select --------------------------------------------------------------------------------------


def test_select_by_suffix_and_bucket() -> None:
    """select keeps suffix matches in allowed buckets and explains every other skip."""
    other = record("x.bin")
    other["s3"]["bucket"]["name"] = "elsewhere"
    parsed = parse_message(body(record("a.bin"), record("a.BIN"), record("a.jpg"), other))
    chosen = select(parsed, suffix=".bin", allowed_buckets=["amzn-s3-demo-bucket"])
    assert [o.key for o in chosen.objects] == ["a.bin"]
    assert [s.reason for s in chosen.skipped] == ["suffix", "suffix", "bucket_not_allowed"]


def test_select_without_allow_list_allows_every_bucket() -> None:
    """An empty allow-list allows all buckets; earlier skips are kept."""
    removed = record()
    removed["eventName"] = "ObjectRemoved:Delete"
    other = record("x.bin")
    other["s3"]["bucket"]["name"] = "elsewhere"
    chosen = select(parse_message(body(other, removed)), suffix=".bin")
    assert [o.bucket for o in chosen.objects] == ["elsewhere"]
    assert [s.reason for s in chosen.skipped] == ["not_object_created"]


def test_select_refuses_an_empty_suffix() -> None:
    """An empty suffix would select everything, so it is a ValueError."""
    with pytest.raises(ValueError, match="suffix"):
        select(ParsedMessage((), ()), suffix="")


# --- parse_s3_uri ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("s3://bucket/key/with/slashes", ("bucket", "key/with/slashes")),
        ("s3://bucket/prefix/", ("bucket", "prefix/")),
        ("s3://bucket/", ("bucket", "")),
        ("s3://bucket", ("bucket", "")),
        ("S3://bucket/a+b%20c", ("bucket", "a+b%20c")),
    ],
)
def test_parse_s3_uri(uri: str, expected: tuple[str, str]) -> None:
    """s3:// URIs split into bucket and a literal (not decoded) key, possibly empty."""
    assert parse_s3_uri(uri) == expected


@pytest.mark.parametrize(
    ("uri", "why"),
    [
        ("https://bucket/key", "expected s3://bucket/key"),
        ("bucket/key", "expected s3://bucket/key"),
        ("s3://", "no bucket"),
        ("s3:///key", "no bucket"),
        ("s3://bu cket/key", "whitespace"),
        ("s3://bucket/a/../b", "path segment"),
    ],
)
def test_parse_s3_uri_refuses(uri: str, why: str) -> None:
    """Other schemes, missing buckets and traversal keys are a ValueError."""
    with pytest.raises(ValueError, match=why):
        parse_s3_uri(uri)


# --- properties ----------------------------------------------------------------------------------


def _acceptable(key: str) -> bool:
    # The refusal rules, restated independently of key_problem.
    if not key or "\x00" in key or len(key.encode("utf-8")) > 1024:
        return False
    return not any(s in (".", "..") for s in key.replace("\\", "/").split("/"))


keys = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=300
).filter(_acceptable)


@given(key=keys)
@settings(max_examples=500)
def test_any_acceptable_key_round_trips(key: str) -> None:
    """quote_plus(key) in a record parses back to exactly key."""
    assert only(parse_message(body(record(quote_plus(key))))).key == key


@given(key=keys)
def test_any_acceptable_key_round_trips_with_moto_slash_encoding(key: str) -> None:
    """Keys round-trip whether or not '/' was encoded (moto) or kept (S3)."""
    encoded = quote_plus(key, safe="/")
    assert only(parse_message(body(record(encoded)))).key == key


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "Records",
                    "s3",
                    "bucket",
                    "object",
                    "name",
                    "key",
                    "eventSource",
                    "eventName",
                    "Type",
                    "Message",
                    "Event",
                    "detail-type",
                    "detail",
                    "source",
                    "size",
                    "eTag",
                    "versionId",
                    "version-id",
                    "etag",
                    "time",
                    "eventTime",
                ]
            )
            | st.text(max_size=5),
            children,
            max_size=5,
        )
    ),
    max_leaves=30,
)


def _mutated_record(draw: st.DrawFn) -> str:
    rec = record()
    path = draw(
        st.sampled_from(
            [
                ("eventSource",),
                ("eventName",),
                ("eventTime",),
                ("s3",),
                ("s3", "bucket"),
                ("s3", "bucket", "name"),
                ("s3", "object"),
                ("s3", "object", "key"),
                ("s3", "object", "size"),
                ("s3", "object", "eTag"),
                ("s3", "object", "versionId"),
            ]
        )
    )
    target: Any = rec
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = draw(json_values)
    return body(rec, record())


@st.composite
def mutated_records(draw: st.DrawFn) -> str:
    return _mutated_record(draw)


@given(
    raw=st.one_of(
        st.binary(max_size=300),
        st.text(max_size=300),
        json_values.map(json.dumps),
        json_values.map(lambda v: sns(json.dumps(v))),
        mutated_records(),
    )
)
@settings(max_examples=1000)
def test_parse_message_raises_only_bad_input(raw: str | bytes) -> None:
    """Whatever arrives, parse_message returns a ParsedMessage or raises BadInput."""
    try:
        parsed = parse_message(raw)
    except BadInput as exc:
        assert len(str(exc)) < 200
    else:
        assert isinstance(parsed, ParsedMessage)
        assert all(key_problem(o.key) is None for o in parsed.objects)
