"""Fixtures of the in-process web tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

import mieruka


@pytest.fixture
def client(app: mieruka.App) -> Iterator[TestClient]:
    """Starlette's client on the app's ASGI app (its lifespan starts the app if the fixture did not)."""
    with TestClient(app.asgi()) as test_client:
        yield test_client
