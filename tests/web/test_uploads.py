"""Upload storage: one contract for the home folder and an S3 bucket (moto's server), and a real
Celery worker with a home of its own reading a file uploaded to the server."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest

from mieruka.artifacts import LocalUploads, UploadStorage, open_storage, open_uploads
from mieruka.artifacts.uploads import job_upload_root
from tests.contracts.test_artifact_contract import make_bucket, s3_endpoint  # noqa: F401 - the fixture

UPLOAD_ID = "0123456789abcdef0123456789abcdef"


@pytest.fixture(params=["local", "s3"])
def uploads(request: pytest.FixtureRequest, tmp_path: Path) -> UploadStorage:
    if request.param == "local":
        return open_uploads(open_storage("local", tmp_path / "artifacts"), tmp_path / "uploads")
    endpoint: str = request.getfixturevalue("s3_endpoint")
    bucket = f"u-{request.node.name.split('[')[0][-40:].replace('_', '-')}".lower()
    make_bucket(endpoint, bucket)
    return open_uploads(open_storage(f"s3://{bucket}/pre", tmp_path / "work", endpoint), tmp_path / "uploads")


def put_local(uploads: UploadStorage, upload_id: str, name: str, data: bytes) -> None:
    folder = uploads.root / upload_id
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)


def test_kept_uploads_can_be_fetched(uploads: UploadStorage, tmp_path: Path) -> None:
    put_local(uploads, UPLOAD_ID, "data é.csv", b"a,b\n1,2\n")
    uploads.keep(UPLOAD_ID, "data é.csv")
    assert uploads.exists(UPLOAD_ID, "data é.csv")
    uploads.fetch(UPLOAD_ID, "data é.csv", tmp_path / "out" / "copy.csv")
    assert (tmp_path / "out" / "copy.csv").read_bytes() == b"a,b\n1,2\n"


def test_unknown_or_invalid_uploads_are_missing(uploads: UploadStorage, tmp_path: Path) -> None:
    for upload_id, name in [(UPLOAD_ID, "nothing.txt"), ("../etc", "passwd"), (UPLOAD_ID, "../x"), ("", "a")]:
        assert not uploads.exists(upload_id, name)
        with pytest.raises(FileNotFoundError):
            uploads.keep(upload_id, name)
        with pytest.raises(FileNotFoundError):
            uploads.fetch(upload_id, name, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_shared_upload_can_leave_this_machine(uploads: UploadStorage, tmp_path: Path) -> None:
    put_local(uploads, UPLOAD_ID, "x.txt", b"x")
    uploads.keep(UPLOAD_ID, "x.txt", drop_local=True)
    assert uploads.exists(UPLOAD_ID, "x.txt")
    uploads.fetch(UPLOAD_ID, "x.txt", tmp_path / "x.txt")
    assert (tmp_path / "x.txt").read_bytes() == b"x"
    uploads.keep(UPLOAD_ID, "x.txt", drop_local=True)  # again, e.g. a rerun through another server
    uploads.delete(UPLOAD_ID)
    assert not uploads.exists(UPLOAD_ID, "x.txt")


def test_delete_removes_only_that_upload_everywhere(uploads: UploadStorage, tmp_path: Path) -> None:
    other = "f" * 32
    for upload_id in (UPLOAD_ID, other):
        put_local(uploads, upload_id, "x.txt", upload_id.encode())
        uploads.keep(upload_id, "x.txt")
    uploads.delete(UPLOAD_ID)
    uploads.delete("nothing-here")
    assert not uploads.exists(UPLOAD_ID, "x.txt")
    assert not (uploads.root / UPLOAD_ID).exists()
    uploads.fetch(other, "x.txt", tmp_path / "other.txt")
    assert (tmp_path / "other.txt").read_bytes() == other.encode()


def test_a_job_reads_its_uploads_in_place_when_this_machine_has_them(uploads: UploadStorage) -> None:
    put_local(uploads, UPLOAD_ID, "in.txt", b"here")
    uploads.keep(UPLOAD_ID, "in.txt")
    params = {"document": {"upload_id": UPLOAD_ID, "filename": "in.txt", "size": 4, "content_type": "text/plain"}}
    with job_upload_root(uploads, params) as root:
        assert root == uploads.root


def test_a_machine_without_the_upload_downloads_it_for_the_job_only(
    s3_endpoint: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    make_bucket(s3_endpoint, "two-homes")
    storage = open_storage("s3://two-homes", tmp_path / "work", s3_endpoint)
    server = open_uploads(storage, tmp_path / "server" / "uploads")
    worker = open_uploads(storage, tmp_path / "worker" / "uploads")
    put_local(server, UPLOAD_ID, "in.bin", bytes(range(256)) * 1000)
    server.keep(UPLOAD_ID, "in.bin")
    ref = {"upload_id": UPLOAD_ID, "filename": "in.bin", "size": 256000, "content_type": "x/y"}
    with job_upload_root(worker, {"document": ref, "more": [ref]}) as root:
        assert root != worker.root
        assert (root / UPLOAD_ID / "in.bin").read_bytes() == bytes(range(256)) * 1000
    assert not root.exists()  # removed once the job is done
    server.delete(UPLOAD_ID)
    with pytest.raises(FileNotFoundError, match="in.bin"), job_upload_root(worker, {"document": ref}):
        pass


def test_the_local_default_keeps_uploads_in_the_home(tmp_path: Path) -> None:
    assert isinstance(open_uploads(open_storage("", tmp_path / "a"), tmp_path / "u"), LocalUploads)


def test_uploads_go_to_the_bucket_and_leave_with_their_job(s3_endpoint: str, tmp_path: Path) -> None:  # noqa: F811
    """Through the API: the server copies an accepted upload to the bucket; deleting the job deletes
    both copies; a refused submission leaves nothing behind."""
    import boto3
    from fastapi.testclient import TestClient

    from tests.jobs import app

    make_bucket(s3_endpoint, "api-uploads")
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    app._settings = None
    app.configure(
        home=str(tmp_path / "home"), workers=1, artifact_storage="s3://api-uploads/m", s3_endpoint_url=s3_endpoint
    )
    try:
        with TestClient(app.asgi()) as client:
            doc = {"filename": "a.txt", "content_base64": base64.b64encode(b"hello upload").decode()}
            refused = client.post("/api/tasks/read_upload/jobs", json={"document": doc, "extra": 3})
            assert refused.status_code == 422
            assert s3.list_objects_v2(Bucket="api-uploads")["KeyCount"] == 0
            assert list((tmp_path / "home" / "uploads").iterdir()) == []
            job_id = client.post("/api/tasks/read_upload/jobs", json={"document": doc}).json()["id"]
            job = client.get(f"/api/jobs/{job_id}", params={"wait": 30}).json()
            assert job["status"] == "succeeded", job
            assert job["result"]["text"] == "hello upload"
            upload_id = job["params"]["document"]["upload_id"]
            keys = [k["Key"] for k in s3.list_objects_v2(Bucket="api-uploads")["Contents"]]
            assert keys == [f"m/uploads/{upload_id}/a.txt"]
            assert client.delete(f"/api/jobs/{job_id}").status_code == 204
            assert s3.list_objects_v2(Bucket="api-uploads")["KeyCount"] == 0
            assert not (tmp_path / "home" / "uploads" / upload_id).exists()
    finally:
        app._settings = None


def test_an_unreachable_bucket_refuses_the_job_with_503_and_keeps_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastapi.testclient import TestClient

    from tests.conftest import free_port
    from tests.jobs import app

    for key, value in {
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_MAX_ATTEMPTS": "1",
    }.items():
        monkeypatch.setenv(key, value)
    app._settings = None
    app.configure(
        home=str(tmp_path / "home"),
        workers=1,
        artifact_storage="s3://gone/m",
        s3_endpoint_url=f"http://127.0.0.1:{free_port()}",
    )
    try:
        with TestClient(app.asgi()) as client:
            doc = {"filename": "a.txt", "content_base64": base64.b64encode(b"x").decode()}
            response = client.post("/api/tasks/read_upload/jobs", json={"document": doc})
            assert response.status_code == 503
            assert response.json()["error"]["code"] == "storage_unavailable"
            assert "document: the uploaded file cannot be stored" in response.json()["error"]["message"]
            assert list((tmp_path / "home" / "uploads").iterdir()) == []
            assert client.get("/api/jobs").json()["jobs"] == []
    finally:
        app._settings = None


@pytest.fixture
def celery_s3(s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[object, str]]:  # noqa: F811
    """A Celery worker whose home is not the server's, both on the same bucket."""
    from tests.celery_worker import CeleryWorker, private_redis
    from tests.conftest import fresh_postgres_database

    make_bucket(s3_endpoint, "celery-uploads")
    monkeypatch.setenv("MIERUKA_ARTIFACT_STORAGE", "s3://celery-uploads/lab")
    monkeypatch.setenv("MIERUKA_S3_ENDPOINT_URL", s3_endpoint)
    (tmp_path / "worker-tmp").mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp_path / "worker-tmp"))  # where its downloads go, and leave
    with fresh_postgres_database("mieruka_uploads") as database_url, private_redis() as broker:
        worker = CeleryWorker(tmp_path / "worker-home", database_url, broker, "--concurrency", "1")
        monkeypatch.delenv("TMPDIR")
        try:
            worker.wait_ready()
            yield worker, s3_endpoint
        except BaseException:
            print(worker.output())
            raise
        finally:
            worker.stop()


def test_a_celery_worker_with_another_home_reads_the_uploaded_file(
    celery_s3: tuple[object, str], tmp_path: Path
) -> None:
    import boto3
    from fastapi.testclient import TestClient

    from tests.celery_worker import CeleryWorker
    from tests.jobs import app

    worker, endpoint = celery_s3
    assert isinstance(worker, CeleryWorker)
    app._settings = None
    app.configure(
        home=str(tmp_path / "server-home"),
        database_url=worker.database_url,
        executor="celery",
        broker_url=worker.broker_url,
    )
    try:
        with TestClient(app.asgi()) as client:
            content = "ünïcode upload\n" * 5000
            files = {
                "document": ("notes.txt", content.encode(), "text/plain"),
                "extra": ("more.bin", b"\x00\x01", "application/octet-stream"),
            }
            response = client.post("/api/tasks/read_upload/jobs", files=files)
            assert response.status_code == 202, response.text
            # In the bucket only: whichever server deletes the job reaches the one copy.
            assert list((tmp_path / "server-home" / "uploads").iterdir()) == []
            job = client.get(f"/api/jobs/{response.json()['id']}", params={"wait": 60}).json()
            assert job["status"] == "succeeded", (job, worker.output())
            assert job["result"] == {
                "name": "notes.txt",
                "size": len(content.encode()),
                "text": content,
                "extra": ["more.bin"],
            }
            assert not (worker.home / "uploads").exists() or not any((worker.home / "uploads").iterdir())
            assert list((tmp_path / "worker-tmp").glob("mieruka-uploads-*")) == []  # cleaned after the job
            assert client.delete(f"/api/jobs/{job['id']}").status_code == 204
            s3 = boto3.client("s3", endpoint_url=endpoint)
            assert s3.list_objects_v2(Bucket="celery-uploads", Prefix="lab/uploads/")["KeyCount"] == 0
    finally:
        app._settings = None
