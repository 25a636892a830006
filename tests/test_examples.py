"""The examples shown in the README run as documented."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.conftest import ServerProcess

EXAMPLES = Path(__file__).parent.parent / "examples"


def test_lab_tools_example(tmp_path: Path) -> None:
    proc = ServerProcess(str(EXAMPLES / "lab_tools" / "app.py"), tmp_path / "home", "--workers", "1")
    try:
        proc.wait_ready()
        with httpx.Client(base_url=proc.url, timeout=30) as client:
            reads = b">r1\nACGTACGT\n>r2\nTTGACA\n"
            response = client.post("/api/tasks/align/jobs", files={"reads": ("reads.fa", reads)},
                                   data={"reference": "mm10"})
            assert response.status_code == 202, response.text
            job = client.get(response.headers["location"], params={"wait": 30}).json()
            assert job["status"] == "succeeded", job
            assert job["result"] == {"mapped": 0.97, "reads": 2, "min_quality": 20}
            assert [a["name"] for a in job["artifacts"]] == ["report.html"]
            logs = client.get(f"/api/jobs/{job['id']}/logs").json()["lines"]
            assert logs[0]["text"] == "indexed mm10; 2 reads"
            task = client.get("/api/tasks/align").json()
            assert task["description"].startswith("Align reads")
            assert task["params_schema"]["properties"]["reference"]["enum"] == ["hg38", "mm10"]
    finally:
        proc.stop()


def test_a_script_that_serves_itself_at_module_level(tmp_path: Path) -> None:
    """`python myapp.py` with app.serve() unguarded: workers import the file, but must not serve."""
    import subprocess
    import sys

    from tests.conftest import free_port, wait_healthy

    port = free_port()
    script = tmp_path / "myapp.py"
    script.write_text(
        "import mieruka\n"
        f"app = mieruka.App('script', home={str(tmp_path / 'home')!r}, workers=1)\n"
        "@app.task\n"
        "def double(x: int = 2) -> int:\n"
        "    return 2 * x\n"
        f"app.serve(port={port})\n")
    log = tmp_path / "out.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, str(script)], stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, proc, log.read_text)
        job = httpx.post(f"{url}/api/tasks/double/run", json={"x": 21}, timeout=30).json()
        assert job["status"] == "succeeded" and job["result"] == 42, (job, log.read_text())
    finally:
        proc.terminate()
        proc.wait(timeout=20)
