"""Drives the gcp-emulator's Cloud Storage with Google's own client library
(google-cloud-storage): its uploads (multipart), downloads (media link and
checksum), listing, deletes, and its own mapping of Google's errors to
exceptions (PreconditionFailed for 412, NotFound for 404).

Run through run.sh, which builds the emulator and sets EMULATOR_BIN.
"""

import pytest
from google.api_core import exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

# The emulator fixture (a fresh emulator per session) is shared with the other cases.
from conformance_test import PROJECT, emulator  # noqa: F401

PRECONDITION = "At least one of the pre-conditions you specified did not hold."


@pytest.fixture(scope="module")
def gcs(emulator):  # noqa: F811
    return storage.Client(
        project=PROJECT,
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": emulator.rstrip("/")},
    )


@pytest.fixture(scope="module")
def bucket(gcs):
    b = storage.Bucket(gcs, "conformance-state")
    b.iam_configuration.uniform_bucket_level_access_enabled = True
    b.iam_configuration.public_access_prevention = "enforced"
    return gcs.create_bucket(b)


def test_bucket_settings_read_back(gcs, bucket):
    b = gcs.get_bucket("conformance-state")
    assert b.iam_configuration.uniform_bucket_level_access_enabled
    assert b.iam_configuration.public_access_prevention == "enforced"
    policy = b.get_iam_policy()
    assert policy.etag
    with pytest.raises(exceptions.NotFound):
        gcs.get_bucket("no-such-bucket-here")


def test_upload_download_list_delete(bucket):
    for name, data in [("state/a.json", b'{"a": 1}'), ("state/b.json", b"b"), ("other/c", b"c")]:
        bucket.blob(name).upload_from_string(data, content_type="application/json")
    blob = bucket.get_blob("state/a.json")
    assert blob.size == 8
    assert blob.metageneration == 1
    assert blob.crc32c
    assert blob.download_as_bytes() == b'{"a": 1}'
    # Without the metadata first: the client builds the download URL itself.
    assert bucket.blob("state/b.json").download_as_bytes() == b"b"

    names = [b.name for b in bucket.client.list_blobs(bucket, prefix="state/")]
    assert names == ["state/a.json", "state/b.json"]
    it = bucket.client.list_blobs(bucket, delimiter="/")
    assert [b.name for b in it] == []
    assert it.prefixes == {"state/", "other/"}
    # Paged listing walks every object once.
    paged = [b.name for b in bucket.client.list_blobs(bucket, max_results=10, page_size=1)]
    assert paged == ["other/c", "state/a.json", "state/b.json"]

    bucket.blob("other/c").delete()
    assert bucket.get_blob("other/c") is None
    with pytest.raises(exceptions.NotFound) as e:
        bucket.blob("other/c").download_as_bytes()
    assert e.value.code == 404


def test_create_only_twice_second_is_precondition_failed(bucket):
    blob = bucket.blob("leases/app")
    blob.upload_from_string(b"holder-1", if_generation_match=0)
    first = blob.generation
    assert first
    with pytest.raises(exceptions.PreconditionFailed) as e:
        bucket.blob("leases/app").upload_from_string(b"holder-2", if_generation_match=0)
    assert e.value.code == 412
    assert PRECONDITION in e.value.message
    # The upload path raises from the status and message; the body is Google's.
    body = e.value.response.json()["error"]
    assert body["code"] == 412
    assert body["errors"][0]["reason"] == "conditionNotMet"
    assert bucket.blob("leases/app").download_as_bytes() == b"holder-1"


def test_generation_match_update_and_delete(bucket):
    blob = bucket.blob("leases/api")
    blob.upload_from_string(b"v1", if_generation_match=0)
    g1 = blob.generation
    blob.upload_from_string(b"v2", if_generation_match=g1)
    g2 = blob.generation
    assert g2 > g1
    with pytest.raises(exceptions.PreconditionFailed):
        bucket.blob("leases/api").upload_from_string(b"v3", if_generation_match=g1)
    # Reading by a stale generation precondition fails too; the current one reads.
    with pytest.raises(exceptions.PreconditionFailed):
        bucket.blob("leases/api").download_as_bytes(if_generation_match=g1)
    assert bucket.blob("leases/api").download_as_bytes(if_generation_match=g2) == b"v2"
    # Metadata patch: metageneration moves, generation stays.
    b = bucket.get_blob("leases/api")
    b.metadata = {"holder": "daemon-1"}
    b.patch(if_metageneration_match=1)
    assert (b.generation, b.metageneration) == (g2, 2)
    with pytest.raises(exceptions.PreconditionFailed):
        bucket.blob("leases/api").delete(if_generation_match=g1)
    bucket.blob("leases/api").delete(if_generation_match=g2)
    with pytest.raises(exceptions.NotFound):
        bucket.blob("leases/api").delete()
