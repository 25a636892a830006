"""A small HTTP client for a running mieruka server (the CLI's `submit` and `jobs` use it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from .errors import MierukaError


class ServerError(MierukaError):
    """The server answered with an error, or could not be reached."""

    def __init__(self, message: str, status_code: int = 0) -> None:
        super().__init__(message)
        self.status_code = status_code


class Client:
    """>>> job = Client("http://127.0.0.1:8000").submit("align", {"min_quality": 30}, wait=60)"""

    def __init__(self, url: str, timeout: float = 30.0, token: str = "") -> None:
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            self._http = httpx.Client(base_url=self.url, timeout=timeout, headers=headers)
        except (httpx.InvalidURL, ValueError) as exc:
            raise ServerError(f"{url!r} is not a server URL: {exc}") from None
        self._token = token

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.ConnectError:
            raise ServerError(
                f"cannot reach a mieruka server at {self.url}: is it running? "
                "(start one with `mieruka run APP`, or pass --url)"
            ) from None
        except httpx.TimeoutException:
            raise ServerError(f"{self.url} did not answer in time") from None
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise ServerError(f"request to {self.url} failed: {exc}") from None
        if response.status_code >= 400:
            try:
                message = response.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = response.text[:200] or response.reason_phrase
            if response.status_code == 401 and not self._token:
                message += (
                    "; set MIERUKA_TOKEN (or --token) to an API token: `mieruka tokens create --user NAME`, "
                    "run with the server's home (its folder, --home or MIERUKA_HOME)"
                )
            raise ServerError(message, response.status_code)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def tasks(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/api/tasks")
        return result

    def task(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/api/tasks/{_part(name)}")
        return result

    def submit(
        self, task: str, params: dict[str, Any], files: dict[str, list[Path]] | None = None, wait: float | None = None
    ) -> dict[str, Any]:
        if files:
            form: list[tuple[str, Any]] = [(k, v if isinstance(v, str) else json.dumps(v)) for k, v in params.items()]
            handles = [(name, path.open("rb")) for name, paths in files.items() for path in paths]
            try:
                job = self._call(
                    "POST",
                    f"/api/tasks/{_part(task)}/jobs",
                    data=dict(form),
                    files=[(name, (Path(fh.name).name, fh)) for name, fh in handles],
                )
            finally:
                for _, fh in handles:
                    fh.close()
        else:
            job = self._call("POST", f"/api/tasks/{_part(task)}/jobs", json=params)
        if wait:
            job = self.job(job["id"], wait=wait)
        result: dict[str, Any] = job
        return result

    def job(self, job_id: int, wait: float = 0) -> dict[str, Any]:
        timeout = httpx.Timeout(wait + 30) if wait else None
        result: dict[str, Any] = self._call(
            "GET",
            f"/api/jobs/{job_id}",
            params={"wait": wait} if wait else None,
            **({"timeout": timeout} if timeout else {}),
        )
        return result

    def jobs(self, **filters: Any) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            "GET", "/api/jobs", params={k: v for k, v in filters.items() if v is not None}
        )
        return result

    def logs(self, job_id: int, after: int = 0, limit: int = 1000, step: str | None = None) -> dict[str, Any]:
        path = f"/api/jobs/{job_id}/logs" if step is None else f"/api/jobs/{job_id}/steps/{_part(step)}/logs"
        result: dict[str, Any] = self._call("GET", path, params={"after": after, "limit": limit})
        return result

    def steps(self, job_id: int) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", f"/api/jobs/{job_id}/steps")
        return result

    def cancel(self, job_id: int) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", f"/api/jobs/{job_id}/cancel")
        return result

    def retry(self, job_id: int) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", f"/api/jobs/{job_id}/retry")
        return result

    def delete(self, job_id: int) -> None:
        self._call("DELETE", f"/api/jobs/{job_id}")

    def sources(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/api/sources")
        return result

    def refresh_source(self, name: str, wait: float = 0) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            "POST", f"/api/sources/{_part(name)}/refresh", params={"wait": wait}, timeout=httpx.Timeout(wait + 30)
        )
        return result


def _part(name: str) -> str:
    """A name as one segment of a path: "a/b", ".." or "?" stay inside it (quoted), never another route."""
    quoted = quote(name, safe="")
    return quoted.replace(".", "%2E") if quoted in (".", "..") else quoted
