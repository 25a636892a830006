"""A task's docstring, in the style its author writes (NumPy, Google, reST), is its help: the task's
description and each parameter's help, on the task's form and in the OpenAPI document."""

from __future__ import annotations

import html
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import mieruka

app = mieruka.App("Docstrings")


@app.task
def numpy_style(samples: int, seed: int = 0) -> float:
    """Estimate pi by throwing darts.

    Counts the darts that land in the quarter circle.

    Parameters
    ----------
    samples : int
        How many darts
        to throw.
    seed : int, optional
        Random seed.

    Returns
    -------
    float
        The estimate.
    """
    return 3.14


@app.task
def google_style(samples: int, seed: int = 0) -> float:
    """Estimate pi by throwing darts.

    Counts the darts that land in the quarter circle.

    Args:
        samples: How many darts
            to throw.
        seed (int): Random seed.

    Returns:
        float: The estimate.
    """
    return 3.14


@app.task
def rest_style(samples: int, seed: int = 0) -> float:
    """Estimate pi by throwing darts.

    Counts the darts that land in the quarter circle.

    :param samples: How many darts
        to throw.
    :param int seed: Random seed.
    :returns: The estimate.
    """
    return 3.14


@app.task
def in_languages(path: str, limit: int = 10) -> int:
    """Count the words.

    Args:
        path: The file to read.
        limit: How many words at most.

    ja:
        単語を数えます。

        Args:
            path: 読むファイル。

    ru:
        Parameters
        ----------
        path : str
            Файл, который нужно прочитать.

    Returns:
        How many.
    """
    return 0


STYLES = ["numpy_style", "google_style", "rest_style"]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    home: Path = tmp_path_factory.mktemp("help") / "home"
    app.configure(home=str(home), workers=1, poll_interval=0.2)
    with TestClient(app.asgi()) as test_client:
        yield test_client


@pytest.mark.parametrize("task", STYLES)
def test_the_form_shows_each_parameters_help_and_the_description(client: TestClient, task: str) -> None:
    page = client.get(f"/tasks/{task}", headers={"Accept": "text/html"})
    assert page.status_code == 200, page.text[:2000]
    text = html.unescape(page.text)
    assert "How many darts to throw." in text
    assert "Random seed." in text
    assert "Counts the darts that land in the quarter circle." in text
    for section in ("Parameters", "----------", "Args:", ":param", "The estimate."):
        assert section not in text


@pytest.mark.parametrize("task", STYLES)
def test_the_openapi_document_shows_the_help(client: TestClient, task: str) -> None:
    doc = client.get("/openapi.json").json()
    op = doc["paths"][f"/api/tasks/{task}/jobs"]["post"]
    assert op["summary"] == "Submit: Estimate pi by throwing darts."
    assert op["description"] == "Estimate pi by throwing darts.\n\nCounts the darts that land in the quarter circle."
    params = doc["components"]["schemas"][
        op["requestBody"]["content"]["application/json"]["schema"]["$ref"].split("/")[-1]
    ]
    assert params["properties"]["samples"]["description"] == "How many darts to throw."
    assert params["properties"]["seed"]["description"] == "Random seed."


def test_sections_named_by_a_language_give_the_description_and_the_help_in_it(client: TestClient) -> None:
    def form(language: str) -> str:
        page = client.get("/tasks/in_languages", headers={"Accept": "text/html", "Accept-Language": language})
        assert page.status_code == 200, page.text[:2000]
        return html.unescape(page.text)

    japanese = form("ja")
    assert "単語を数えます。" in japanese and "読むファイル。" in japanese
    assert "How many words at most." in japanese  # not given in Japanese: the docstring's own
    assert "Count the words." not in japanese and "The file to read." not in japanese
    russian = form("ru")  # help only, in another docstring style: the description stays English
    assert "Файл, который нужно прочитать." in russian and "Count the words." in russian
    english = form("en")
    assert "The file to read." in english and "単語" not in english and "Файл" not in english
    for section in ("ja:", "ru:", "Args:", "Parameters", "How many."):
        assert section not in japanese + russian + english

    doc = client.get("/openapi.json", headers={"Accept-Language": "ja"}).json()
    op = doc["paths"]["/api/tasks/in_languages/jobs"]["post"]
    assert op["description"] == "Count the words."
    params = doc["components"]["schemas"][
        op["requestBody"]["content"]["application/json"]["schema"]["$ref"].split("/")[-1]
    ]
    assert params["properties"]["path"]["description"] == "The file to read."
