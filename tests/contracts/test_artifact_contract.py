"""One contract for every artifact storage: the local directory and an S3-compatible bucket (moto's
S3 server on a free port, reached over HTTP by boto3 as a real S3 would be). A new implementation
only has to be added to the `storage` fixture to be held to the same contract."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from mieruka.artifacts import ArtifactStorage, LocalArtifactStorage, open_storage
from mieruka.errors import ConfigError, ValidationError
from tests.conftest import free_port, need_service

AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server in a thread of this process, on a free port."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        need_service("moto[server] is not installed (pip install 'moto[server]')")
    saved = {k: os.environ.get(k) for k in AWS_ENV}
    os.environ.update(AWS_ENV)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def make_bucket(endpoint: str, name: str) -> None:
    import boto3

    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=name)


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStorage:
    if request.param == "local":
        return open_storage("local", tmp_path / "artifacts")
    endpoint: str = request.getfixturevalue("s3_endpoint")
    bucket = f"b-{request.node.name.split('[')[0][-40:].replace('_', '-')}".lower()
    make_bucket(endpoint, bucket)
    return open_storage(f"s3://{bucket}/some/prefix", tmp_path / "unused", endpoint)


def read(storage: ArtifactStorage, job_id: int, name: str, chunk_size: int = 65536) -> bytes:
    return b"".join(storage.open_chunks(job_id, name, chunk_size))


def test_bytes_round_trip_in_chunks(storage: ArtifactStorage) -> None:
    data = os.urandom(200_000)
    assert storage.save(1, "blob.bin", data) == len(data)
    assert storage.size(1, "blob.bin") == len(data)
    assert read(storage, 1, "blob.bin") == data
    chunks = list(storage.open_chunks(1, "blob.bin", 65536))
    assert all(len(c) <= 65536 for c in chunks) and len(chunks) >= 4


def test_a_file_is_copied_even_a_large_one(storage: ArtifactStorage, tmp_path: Path) -> None:
    source = tmp_path / "big.dat"
    source.write_bytes(os.urandom(9 * 1024 * 1024))  # past boto3's multipart threshold (8 MB)
    assert storage.save(2, "big.dat", source) == source.stat().st_size
    assert read(storage, 2, "big.dat", 1 << 20) == source.read_bytes()
    source.unlink()
    assert storage.size(2, "big.dat") == 9 * 1024 * 1024  # a copy, not a link


def test_saving_again_replaces(storage: ArtifactStorage) -> None:
    storage.save(3, "report.txt", b"first version, longer")
    storage.save(3, "report.txt", b"second")
    assert read(storage, 3, "report.txt") == b"second" and storage.size(3, "report.txt") == 6


def test_empty_and_unicode_names(storage: ArtifactStorage) -> None:
    storage.save(4, "結果 (final).csv", b"")
    assert storage.size(4, "結果 (final).csv") == 0 and read(storage, 4, "結果 (final).csv") == b""


def test_missing_artifacts_raise_file_not_found(storage: ArtifactStorage) -> None:
    storage.save(5, "there.txt", b"x")
    with pytest.raises(FileNotFoundError):
        storage.size(5, "missing.txt")
    with pytest.raises(FileNotFoundError):
        read(storage, 5, "missing.txt")
    with pytest.raises(FileNotFoundError):
        storage.size(6, "there.txt")  # another job's name


@pytest.mark.parametrize("name", ["", ".", "..", "a/b.txt", "../escape", "back\\slash", "nul\x00", "x" * 256])
def test_unsafe_names_are_refused(storage: ArtifactStorage, name: str) -> None:
    with pytest.raises(ValidationError):
        storage.save(7, name, b"x")


def test_delete_job_removes_only_that_jobs_artifacts(storage: ArtifactStorage) -> None:
    for name in ("a.txt", "b.txt"):
        storage.save(1, name, b"one")
    storage.save(10, "a.txt", b"ten")  # a job whose id starts with the other's
    storage.delete_job(1)
    for name in ("a.txt", "b.txt"):
        with pytest.raises(FileNotFoundError):
            storage.size(1, name)
    assert read(storage, 10, "a.txt") == b"ten"
    storage.delete_job(1)  # nothing left: no error
    storage.delete_job(999)


def test_a_local_work_folder_per_job_goes_with_its_artifacts(storage: ArtifactStorage) -> None:
    work = storage.work_dir(3)
    work.mkdir(parents=True)
    (work / "step.txt").write_text("x")
    assert storage.work_dir(4) != work
    storage.save(3, "kept.txt", b"y")
    storage.delete_job(3)
    assert not work.exists()
    with pytest.raises(FileNotFoundError):
        storage.size(3, "kept.txt")


def test_delete_job_with_more_than_a_page_of_artifacts(s3_endpoint: str, tmp_path: Path) -> None:
    make_bucket(s3_endpoint, "many")
    storage = open_storage("s3://many", tmp_path, s3_endpoint)
    storage.page_size = 10  # type: ignore[attr-defined]  # as 1,000 keys per request do in real life
    for i in range(25):
        storage.save(8, f"{i}.txt", b"")
    storage.delete_job(8)
    import boto3

    assert boto3.client("s3", endpoint_url=s3_endpoint).list_objects_v2(Bucket="many").get("KeyCount") == 0


@pytest.mark.parametrize("url", ["s3://", "ftp://bucket", "bucket"])
def test_unknown_storage_urls_are_refused(url: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        open_storage(url, tmp_path)


def test_local_is_the_default(tmp_path: Path) -> None:
    assert isinstance(open_storage("", tmp_path), LocalArtifactStorage)


def test_jobs_write_artifacts_to_s3_and_the_api_streams_them_back(s3_endpoint: str, tmp_path: Path) -> None:
    """The local executor's worker processes upload; the server streams from the bucket; deleting
    the job deletes its objects. (The Celery worker builds its storage the same way.)"""
    import boto3
    from fastapi.testclient import TestClient

    from tests.jobs import app

    make_bucket(s3_endpoint, "jobs")
    app._settings = None
    app.configure(
        home=str(tmp_path / "home"), workers=1, artifact_storage="s3://jobs/mieruka", s3_endpoint_url=s3_endpoint
    )
    try:
        with TestClient(app.asgi()) as client:
            job_id = client.post("/api/tasks/with_artifacts/jobs", json={}).json()["id"]
            job = client.get(f"/api/jobs/{job_id}", params={"wait": 30}).json()
            assert job["status"] == "succeeded", job
            assert client.get(f"/api/jobs/{job_id}/artifacts/hello.txt").content == b"hello artifact"
            assert client.get(f"/api/jobs/{job_id}/artifacts/data.bin").content == bytes(range(256)) * 4
            assert not (tmp_path / "home" / "artifacts" / str(job_id)).exists()
            keys = boto3.client("s3", endpoint_url=s3_endpoint).list_objects_v2(Bucket="jobs")["Contents"]
            assert sorted(k["Key"] for k in keys) == [f"mieruka/{job_id}/data.bin", f"mieruka/{job_id}/hello.txt"]
            assert client.delete(f"/api/jobs/{job_id}").status_code == 204
            assert boto3.client("s3", endpoint_url=s3_endpoint).list_objects_v2(Bucket="jobs")["KeyCount"] == 0
    finally:
        app._settings = None
