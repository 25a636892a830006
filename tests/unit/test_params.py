"""Task signatures: JSON schema, docstrings, validation, binding; make_task checks; schedules."""

from __future__ import annotations

import enum
import inspect
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, Optional
from zoneinfo import ZoneInfo

import pydantic
import pytest
from pydantic import BaseModel, Field

import mieruka
from mieruka import ConfigError, ValidationError, i18n
from mieruka.core.params import File, FileRef, Signature, parse_docstring
from mieruka.core.schedule import Schedule
from mieruka.core.task import make_task


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Region(BaseModel):
    chrom: str
    start: int = 0
    end: int | None = None


def align(
    sample: str,
    reads: int,
    ratio: float = 0.5,
    paired: bool = False,
    mode: Literal["fast", "sensitive"] = "fast",
    color: Color = Color.RED,
    day: date | None = None,
    at: datetime | None = None,
    tags: list[str] = [],  # noqa: B006 - a default that pydantic copies
    region: Region | None = None,
    threads: Annotated[int, Field(ge=1, le=64)] = 4,
    job: mieruka.Job = None,  # type: ignore[assignment]
) -> dict[str, Any]:
    """Align reads to the reference.

    Uses the fast aligner.

    Args:
        sample: Sample name.
        reads (int): How many reads
            to take from the input.
        ratio: Fraction kept.

    Returns:
        dict: mapping statistics.
    """
    return {}


SIG = Signature(align, "align")


def props() -> dict[str, Any]:
    properties: dict[str, Any] = SIG.json_schema()["properties"]
    return properties


def resolve(schema: dict[str, Any], prop: dict[str, Any]) -> dict[str, Any]:
    """Follow a `$ref` (directly or as the non-null member of anyOf) into `$defs`."""
    if "anyOf" in prop:
        (prop,) = [p for p in prop["anyOf"] if p.get("type") != "null"]
    if "$ref" in prop:
        target: dict[str, Any] = schema["$defs"][prop["$ref"].rsplit("/", 1)[-1]]
        return target
    return prop


# -- JSON schema --------------------------------------------------------------------------------
def test_schema_types_from_hints() -> None:
    schema = SIG.json_schema()
    p = schema["properties"]
    assert p["sample"]["type"] == "string"
    assert p["reads"]["type"] == "integer"
    assert p["ratio"]["type"] == "number"
    assert p["paired"]["type"] == "boolean"
    assert p["mode"]["enum"] == ["fast", "sensitive"]
    assert resolve(schema, p["color"])["enum"] == ["red", "blue"]
    assert resolve(schema, p["day"]) == {"type": "string", "format": "date"}
    assert resolve(schema, p["at"]) == {"type": "string", "format": "date-time"}
    assert p["tags"]["type"] == "array" and p["tags"]["items"] == {"type": "string"}
    region = resolve(schema, p["region"])
    assert region["properties"]["chrom"]["type"] == "string"
    assert region["required"] == ["chrom"]
    assert p["threads"]["type"] == "integer"
    assert (p["threads"]["minimum"], p["threads"]["maximum"]) == (1, 64)
    assert schema["additionalProperties"] is False
    json.dumps(schema)  # JSON-able as a whole


def test_schema_defaults_and_required() -> None:
    schema = SIG.json_schema()
    assert schema["required"] == ["sample", "reads"]
    p = schema["properties"]
    assert "default" not in p["sample"] and "default" not in p["reads"]
    assert p["ratio"]["default"] == 0.5
    assert p["paired"]["default"] is False
    assert p["mode"]["default"] == "fast"
    assert p["color"]["default"] == "red"  # the JSON value of the enum member
    assert p["day"]["default"] is None
    assert p["tags"]["default"] == []
    assert p["threads"]["default"] == 4


def test_schema_title_is_named_after_the_task() -> None:
    assert SIG.json_schema()["title"] == "AlignParams"
    assert Signature(align, "bulk-rna_seq").json_schema()["title"] == "BulkRnaSeqParams"


def test_job_parameter_is_injected_not_a_field() -> None:
    assert SIG.job_param == "job"
    assert "job" not in props()
    assert "job" not in SIG.model.model_fields

    def optional_job(x: int = 1, ctx: mieruka.Job | None = None) -> None: ...

    sig = Signature(optional_job, "optional_job")
    assert sig.job_param == "ctx"
    assert list(sig.model.model_fields) == ["x"]

    def no_job(x: int) -> None: ...

    assert Signature(no_job, "no_job").job_param is None


def test_varargs_are_ignored_and_untyped_params_accept_anything() -> None:
    def f(a, *args, b: int = 1, **kwargs):  # type: ignore[no-untyped-def]
        ...

    sig = Signature(f, "f")
    assert list(sig.model.model_fields) == ["a", "b"]
    assert sig.validate({"a": {"any": ["thing"]}}) == {"a": {"any": ["thing"]}, "b": 1}


# -- docstrings ---------------------------------------------------------------------------------
def test_google_docstring_becomes_descriptions() -> None:
    p = props()
    assert p["sample"]["description"] == "Sample name."
    assert p["reads"]["description"] == "How many reads to take from the input."
    assert p["ratio"]["description"] == "Fraction kept."
    assert "description" not in p["paired"]


def test_task_description_is_the_docstring_text_without_sections() -> None:
    task = make_task(align)
    assert task.description.startswith("Align reads to the reference.")
    assert "Uses the fast aligner." in task.description
    assert "Args:" not in task.description and "Sample name." not in task.description


def test_task_description_leaves_out_the_returns_section() -> None:
    """The body of "Returns:" (and "Raises:") is about the code, not a description for users."""
    description, _ = parse_docstring(align.__doc__)
    assert description == "Align reads to the reference.\n\nUses the fast aligner."


def test_rest_docstring_becomes_descriptions() -> None:
    def count(path: str, min_len: int = 0) -> int:
        """Count records.

        :param path: input file path
        :param int min_len: shortest record kept
        :returns: the count
        """
        return 0

    sig = Signature(count, "count")
    p = sig.json_schema()["properties"]
    assert p["path"]["description"] == "input file path"
    assert p["min_len"]["description"] == "shortest record kept"
    assert sig.description == "Count records."
    assert make_task(count).description == "Count records."


def test_no_docstring() -> None:
    def bare(x: int) -> None: ...

    sig = Signature(bare, "bare")
    assert sig.description == ""
    assert "description" not in sig.json_schema()["properties"]["x"]
    assert parse_docstring(None) == ("", {})


def test_google_docstring_other_headers_and_varargs() -> None:
    description, helps = parse_docstring("""Do it.

    Parameters:
        a: first
        *args: more
        b (str, optional): second
    """)
    assert description == "Do it."
    assert helps == {"a": "first", "*args": "more", "b": "second"}


def estimate_pi(samples: int, seed: int | None = None, method: str = "darts") -> float:
    """Estimate pi by throwing darts.

    Counts the darts that land in the quarter circle.

    Parameters
    ----------
    samples : int
        How many darts
        to throw.
    seed : int, optional
        Random seed; none means a fresh one.

    Returns
    -------
    float
        The estimate.
    """
    return 3.14


def test_numpy_docstring_becomes_descriptions() -> None:
    sig = Signature(estimate_pi, "estimate_pi")
    p = sig.json_schema()["properties"]
    assert p["samples"]["description"] == "How many darts to throw."
    assert p["seed"]["description"] == "Random seed; none means a fresh one."
    assert "description" not in p["method"]
    assert sig.description == "Estimate pi by throwing darts.\n\nCounts the darts that land in the quarter circle."
    assert make_task(estimate_pi).description == sig.description


@pytest.mark.parametrize(
    "doc",
    [
        # NumPy
        """Sum two numbers.

        Parameters
        ----------
        a : int
            The first.
        b : int
            The second,
            maybe zero.

        Returns
        -------
        int
        """,
        # Google
        """Sum two numbers.

        Args:
            a (int): The first.
            b: The second,
                maybe zero.

        Returns:
            int: the sum.
        """,
        # reST
        """Sum two numbers.

        :param int a: The first.
        :param b: The second,
            maybe zero.
        :returns: the sum.
        """,
        # Epydoc
        """Sum two numbers.

        @param a: The first.
        @param b: The second,
            maybe zero.
        @return: the sum.
        """,
    ],
    ids=["numpy", "google", "rest", "epydoc"],
)
def test_every_docstring_style_gives_the_same_help(doc: str) -> None:
    assert parse_docstring(doc) == ("Sum two numbers.", {"a": "The first.", "b": "The second, maybe zero."})


def test_a_docstring_without_sections_is_all_description() -> None:
    doc = """Sum two numbers.

    Both may be negative: the sum is too.
    Parameters are checked first.
    """
    assert parse_docstring(doc) == (
        "Sum two numbers.\n\nBoth may be negative: the sum is too.\nParameters are checked first.",
        {},
    )


@pytest.mark.parametrize(
    "doc",
    [
        "One line.",
        "A summary.\n\nA longer text\n  indented, with - a dash and (parentheses).\n\nA third paragraph.",
        "No summary line, just\nsome lines\n\n\nand blank ones.",
        "Parameters\n----------\nx\n    the x.",
        "Args:\n    x: the x.",
        "Sum.\n\n@param x the x.",
        "Sum.\n\n:param x: the x.",
    ],
)
def test_a_docstring_reads_as_docstring_parser_reads_it(doc: str) -> None:
    import docstring_parser

    parsed = docstring_parser.parse("\n" + inspect.cleandoc(doc))
    helps = {p.arg_name: " ".join(p.description.split()) for p in parsed.params if p.description}
    assert parse_docstring(doc) == ((parsed.description or "").strip(), helps)


def test_a_field_description_wins_over_the_docstring() -> None:
    def f(n: Annotated[int, Field(description="from the field")] = 1, m: int = Field(2, description="kept")) -> None:
        """Do.

        Parameters
        ----------
        n : int
            from the docstring
        m : int
            from the docstring too
        """

    p = Signature(f, "f").json_schema()["properties"]
    assert p["n"]["description"] == "from the field"
    assert p["m"]["description"] == "kept"


# -- files --------------------------------------------------------------------------------------
def test_file_parameters_are_detected() -> None:
    def upload(
        reads: File,
        extra: list[File] = [],  # noqa: B006
        index: File | None = None,
        legacy: Optional[File] = None,  # noqa: UP045
        n: int = 1,
    ) -> None: ...

    sig = Signature(upload, "upload")
    assert sig.file_fields == {"reads", "extra", "index", "legacy"}
    assert sig.multi_file_fields == {"extra"}
    schema = sig.json_schema()
    reads = resolve(schema, schema["properties"]["reads"])
    assert reads["properties"].keys() >= {"upload_id", "filename", "size"}
    assert schema["properties"]["extra"]["type"] == "array"


def test_annotated_single_file_is_not_multi() -> None:
    """Whether a file field takes many files must come from the type, not from its text: a
    description that happens to contain "list" does not make a single file a list."""

    def upload(
        songs: Annotated[File, Field(description="the playlist file")],
        more: Annotated[list[File], Field(description="other files")] = [],  # noqa: B006
    ) -> None: ...

    sig = Signature(upload, "upload")
    assert sig.file_fields == {"songs", "more"}
    assert sig.multi_file_fields == {"more"}


def test_unsupported_file_containers_are_config_errors() -> None:
    def f(x: dict[str, File]) -> None: ...

    with pytest.raises(ConfigError, match="File, list\\[File\\] or File \\| None"):
        Signature(f, "f")


def test_file_refs_validate_and_bind_to_opened_files(tmp_path: Path) -> None:
    def upload(reads: File, extra: list[File] = [], index: File | None = None) -> None: ...  # noqa: B006

    sig = Signature(upload, "upload")
    ref = {"upload_id": "u1", "filename": "r.fq", "size": 3}
    stored = sig.validate({"reads": ref, "extra": [ref, {**ref, "upload_id": "u2"}]})
    assert stored["reads"] == {**ref, "content_type": "application/octet-stream"}
    assert stored["index"] is None
    with pytest.raises(ValidationError) as err:
        sig.validate({"reads": {**ref, "path": "/etc/passwd"}})
    assert [f["field"] for f in err.value.fields] == ["reads.path"]
    (tmp_path / "u1").write_text("ACG")

    def open_file(r: FileRef) -> File:
        return File(tmp_path / r.upload_id, r.filename, r.size, r.content_type)

    kwargs = sig.bind(stored, open_file)
    assert isinstance(kwargs["reads"], File)
    assert kwargs["reads"].read_text() == "ACG" and kwargs["reads"].name == "r.fq"
    assert [f.path.name for f in kwargs["extra"]] == ["u1", "u2"]
    assert kwargs["index"] is None


# -- validate and bind --------------------------------------------------------------------------
def test_validate_returns_json_values() -> None:
    raw = {
        "sample": "S1",
        "reads": "1000",
        "day": "2024-02-29",
        "at": "2024-02-29T10:00:00+09:00",
        "color": "blue",
        "region": {"chrom": "chr1", "start": 5},
        "tags": ["a", "b"],
        "threads": 8,
    }
    out = SIG.validate(raw)
    assert out == {
        "sample": "S1",
        "reads": 1000,
        "ratio": 0.5,
        "paired": False,
        "mode": "fast",
        "color": "blue",
        "day": "2024-02-29",
        "at": "2024-02-29T10:00:00+09:00",
        "tags": ["a", "b"],
        "region": {"chrom": "chr1", "start": 5, "end": None},
        "threads": 8,
    }
    assert json.loads(json.dumps(out)) == out
    assert SIG.validate(out) == out  # stored params validate again unchanged


def test_validate_names_each_bad_field() -> None:
    with pytest.raises(ValidationError) as err:
        SIG.validate({"reads": "many", "mode": "slowest", "threads": 0, "day": "2024-13-01", "region": {"start": "x"}})
    fields = {f["field"]: f["message"] for f in err.value.fields}
    assert set(fields) == {"sample", "reads", "mode", "threads", "day", "region.chrom", "region.start"}
    assert "required" in fields["sample"].lower()
    assert "greater than or equal to 1" in fields["threads"]
    assert err.value.status_code == 422
    body = err.value.to_dict()
    assert body["code"] == "validation_error" and body["fields"] == err.value.fields
    for name in fields:
        assert name in err.value.message


def test_validate_rejects_unknown_parameters() -> None:
    with pytest.raises(ValidationError) as err:
        SIG.validate({"sample": "S1", "reads": 1, "job": 3, "sampel": "typo"})
    assert {f["field"]: f["message"] for f in err.value.fields} == {
        "job": "unknown parameter",
        "sampel": "unknown parameter",
    }


def limits(
    count: Annotated[int, Field(ge=1, le=10)] = 1,
    ratio: Annotated[float, Field(gt=0.5, lt=2.5, multiple_of=0.5)] = 1.0,
    code: Annotated[str, Field(min_length=2, max_length=3, pattern="^x")] = "xy",
    names: Annotated[list[str], Field(min_length=1, max_length=2)] = ["a"],  # noqa: B006 - read only
    mode: Literal["fast", "sensitive"] = "fast",
    day: date | None = None,
    flag: bool = False,
) -> None:
    pass


LIMITS = Signature(limits, "limits")
TOO_LOW = {"count": 0, "ratio": 0.25, "code": "x", "names": [], "mode": "slow", "day": "2026-13-01", "flag": "maybe"}
TOO_HIGH = {"count": 11.5, "ratio": 3.0, "code": "yyyy", "names": ["a", "b", "c"], "day": "soon", "flag": 2}


@pytest.mark.parametrize("raw", [TOO_LOW, TOO_HIGH, {"count": "many", "ratio": "x", "nope": 1}])
def test_validation_messages_in_english_are_pydantics(raw: dict[str, Any]) -> None:
    """Each message a form shows is translatable; in English it is word for word pydantic's."""
    with pytest.raises(ValidationError) as err:
        LIMITS.validate(raw)
    with pytest.raises(pydantic.ValidationError) as raw_err:
        LIMITS.model.model_validate(raw)
    expected = {".".join(map(str, e["loc"])): e["msg"] for e in raw_err.value.errors()}
    expected.update({name: "unknown parameter" for name, msg in expected.items() if msg.startswith("Extra inputs")})
    assert {f["field"]: f["message"] for f in err.value.fields} == expected


def test_validation_messages_are_translated(monkeypatch: pytest.MonkeyPatch) -> None:
    """In another language a message is the catalog's, filled with the limits as people write them (10, not 10.0)."""
    catalog = {
        "Input should be less than or equal to %(le)s": "%(le)s 以下の値を入力してください",
        "invalid parameters: %(errors)s": "パラメーターが正しくありません: %(errors)s",
        "String should have at least %(num)d character": "%(num)d 文字以上で入力してください",
    }

    class Catalog:
        def gettext(self, message: str) -> str:
            return catalog.get(message, message)

        def ngettext(self, singular: str, plural: str, n: int) -> str:
            return catalog.get(singular, singular if n == 1 else plural)

    monkeypatch.setattr(i18n, "translations", lambda language: Catalog())

    def fn(count: Annotated[float, Field(le=10.0)] = 1, code: Annotated[str, Field(min_length=2)] = "xy") -> None:
        pass

    with pytest.raises(ValidationError) as err:
        Signature(fn, "fn").validate({"count": 11, "code": "x", "other": 1})
    assert err.value.fields == [
        {"field": "count", "message": "10 以下の値を入力してください"},
        {"field": "code", "message": "2 文字以上で入力してください"},
        {"field": "other", "message": "unknown parameter"},  # no translation: the English words
    ]
    assert err.value.message == (
        "パラメーターが正しくありません: count: 10 以下の値を入力してください; code: 2 文字以上で入力してください;"
        " other: unknown parameter"
    )


def test_validate_strict_enough() -> None:
    for bad in (
        {"sample": "S1", "reads": 1.5},
        {"sample": "S1", "reads": 1, "paired": "maybe"},
        {"sample": "S1", "reads": 1, "tags": "a"},
        {"sample": "S1", "reads": 1, "color": "green"},
    ):
        with pytest.raises(ValidationError):
            SIG.validate(bad)


def test_bind_returns_typed_values() -> None:
    stored = SIG.validate(
        {
            "sample": "S1",
            "reads": 3,
            "day": "2024-02-29",
            "at": "2024-02-29T01:00:00Z",
            "color": "blue",
            "region": {"chrom": "chr2"},
        }
    )
    kwargs = SIG.bind(stored, lambda ref: pytest.fail("no files here"))
    assert kwargs["day"] == date(2024, 2, 29) and type(kwargs["day"]) is date
    assert kwargs["at"] == datetime(2024, 2, 29, 1, tzinfo=UTC)
    assert kwargs["color"] is Color.BLUE
    assert isinstance(kwargs["region"], Region) and kwargs["region"].chrom == "chr2"
    assert kwargs["reads"] == 3 and kwargs["mode"] == "fast"
    assert "job" not in kwargs
    assert align(**kwargs) == {}


# -- make_task ----------------------------------------------------------------------------------
def test_make_task_defaults() -> None:
    task = make_task(align)
    assert task.name == "align"
    assert task.title == "Align"
    assert task.retries == 0 and task.schedule is None and task.retention is None
    assert task.summary()["params_schema"] == SIG.json_schema()
    named = make_task(align, name="align-v2", title="Aligner", timeout="10m", retries=2, keep="7d", keep_count=10)
    assert (named.name, named.title, named.timeout, named.retries) == ("align-v2", "Aligner", 600.0, 2)
    assert named.retention is not None
    assert (named.retention.max_age, named.retention.max_count) == (7 * 86400.0, 10)


@pytest.mark.parametrize("name", ["bad name", "a/b", "x.y", "semi;colon", "---" + "?", "tab\t"])
def test_make_task_rejects_bad_names(name: str) -> None:
    with pytest.raises(ConfigError, match="task name"):
        make_task(align, name=name)


@pytest.mark.parametrize("name", ["align", "align_v2", "bulk-rna", "A1"])
def test_make_task_accepts_good_names(name: str) -> None:
    assert make_task(align, name=name).name == name


def test_make_task_rejects_negative_retries_and_bad_limits() -> None:
    with pytest.raises(ConfigError, match="retries"):
        make_task(align, retries=-1)
    with pytest.raises(ConfigError, match="concurrency"):
        make_task(align, concurrency=0)
    with pytest.raises(ConfigError, match="duration"):
        make_task(align, timeout="soon")


def test_make_task_rejects_negative_keep_count() -> None:
    """keep_count becomes the OFFSET of the retention query: a negative one breaks pruning."""
    with pytest.raises(ConfigError):
        make_task(align, keep_count=-1)


def test_scheduled_task_needs_defaults_for_every_parameter() -> None:
    with pytest.raises(ConfigError, match="sample, reads"):
        make_task(align, every="1h")

    def nightly(day: str = "today", job: mieruka.Job = None) -> None:  # type: ignore[assignment]
        ...

    task = make_task(nightly, cron="0 3 * * *")
    assert task.schedule == Schedule(cron="0 3 * * *")


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"cron": "not a cron"}, "invalid cron"),
        ({"cron": "61 * * * *"}, "invalid cron"),
        ({"every": "0s"}, "positive"),
        ({"every": "-1m"}, "duration"),
        ({"every": "1m", "cron": "* * * * *"}, "exactly one"),
    ],
)
def test_bad_schedules_are_config_errors(kw: dict[str, Any], match: str) -> None:
    def tick() -> None: ...

    with pytest.raises(ConfigError, match=match):
        make_task(tick, **kw)


def test_schedule_with_unknown_timezone_is_a_config_error() -> None:
    """Found at definition time, not when the scheduler first computes a due time."""

    def tick() -> None: ...

    with pytest.raises(ConfigError):
        make_task(tick, cron="0 9 * * *", timezone="Mars/Olympus_Mons")


# -- schedules ----------------------------------------------------------------------------------
def test_every_is_aligned_and_strictly_after() -> None:
    s = Schedule(every=60.0)
    noon = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
    assert s.next_after(noon + timedelta(seconds=30)) == noon + timedelta(minutes=1)
    assert s.next_after(noon + timedelta(minutes=1)) == noon + timedelta(minutes=2)
    hourly = make_task(lambda: None, name="hourly", every="1h").schedule
    assert hourly is not None
    got = hourly.next_after(datetime(2024, 1, 1, 21, 10, tzinfo=ZoneInfo("Asia/Tokyo")))  # 12:10 UTC
    assert got == datetime(2024, 1, 1, 13, 0, tzinfo=UTC)
    assert got.utcoffset() == timedelta(0)


def test_cron_in_a_timezone() -> None:
    s = Schedule(cron="0 9 * * *", timezone="Asia/Tokyo")
    got = s.next_after(datetime(2024, 1, 1, 0, 0, tzinfo=UTC) - timedelta(seconds=1))
    assert got == datetime(2024, 1, 1, 0, 0, tzinfo=UTC)  # 09:00 in Tokyo is 00:00 UTC
    assert got.tzinfo is not None and got.utcoffset() == timedelta(0)
    assert s.next_after(got) == datetime(2024, 1, 2, 0, 0, tzinfo=UTC)
    utc = Schedule(cron="0 9 * * *")
    assert utc.next_after(datetime(2024, 1, 1, 0, 0, tzinfo=UTC)) == datetime(2024, 1, 1, 9, 0, tzinfo=UTC)


def test_cron_follows_daylight_saving_time() -> None:
    s = Schedule(cron="0 9 * * *", timezone="America/New_York")
    before = s.next_after(datetime(2024, 3, 8, 15, tzinfo=UTC))
    after = s.next_after(datetime(2024, 3, 10, 15, tzinfo=UTC))
    assert before == datetime(2024, 3, 9, 14, tzinfo=UTC)  # EST, UTC-5
    assert after == datetime(2024, 3, 11, 13, tzinfo=UTC)  # EDT, UTC-4


def test_daily_cron_fires_once_on_the_night_clocks_go_back() -> None:
    """01:30 happens twice in New York on 2024-11-03; a daily job must still run once that day."""
    s = Schedule(cron="30 1 * * *", timezone="America/New_York")
    first = s.next_after(datetime(2024, 11, 2, 12, tzinfo=UTC))
    second = s.next_after(first)
    assert first == datetime(2024, 11, 3, 5, 30, tzinfo=UTC)  # 01:30 EDT
    assert second == datetime(2024, 11, 4, 6, 30, tzinfo=UTC)  # 01:30 EST, the next day


def test_schedule_describe() -> None:
    assert Schedule(every=3600).describe() == "every 1h"
    assert Schedule(every=120).describe() == "every 2m"
    assert Schedule(every=90).describe() == "every 90s"
    assert Schedule(cron="0 9 * * *", timezone="Asia/Tokyo").describe() == "cron 0 9 * * * (Asia/Tokyo)"
