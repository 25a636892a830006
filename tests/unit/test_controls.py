"""Dashboard controls as declarations (core/controls.py, mieruka.controls): what each kind needs, how
it binds to its task, which values a press accepts, and the errors that say what is wrong."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal, cast

import pytest
from pydantic import Field

import mieruka
from mieruka import charts, controls
from mieruka.core.controls import Control, choices_of
from mieruka.core.dashboards import Dashboard
from mieruka.errors import ConfigError, ValidationError


class Speed(Enum):
    LOW = "low"
    HIGH = "high"


def device_app() -> mieruka.App:
    app = mieruka.App("panel")

    @app.task(quick=True)
    def set_relay(relay: int, on: bool) -> dict[str, Any]:
        return {"relay": relay, "on": on}

    @app.task(quick=True, name="fan")
    def set_fan(speed: int = 0) -> int:
        return speed

    @app.task(quick=True)
    def set_mode(mode: Literal["auto", "manual"] = "auto", speed: Speed | None = None) -> str:
        return mode

    @app.task
    def blink(led: int, times: int = 3, upload: mieruka.File | None = None) -> str:
        return f"{led} {times}"

    @app.task
    def reset(hard: bool = False) -> str:
        return "reset"

    @app.source(every="1s")
    def relays() -> list[dict[str, Any]]:
        return [{"relay1": 1, "fan": 40, "mode": "auto"}]

    @app.stream(every=1.0)
    def sensors() -> dict[str, float]:
        return {"fan": 40.0}

    return app


def test_a_panel_of_every_kind_binds_to_its_tasks() -> None:
    app = device_app()
    funcs = {t.name: t.func for t in app.tasks}
    board = app.dashboard(
        "panel",
        [
            charts.kpi("relays", value="relay1", title="Relay 1"),
            controls.toggle(
                funcs["set_relay"], param="on", params={"relay": 1}, state="relays.relay1", title="Relay 1"
            ),
            controls.slider(funcs["fan"], param="speed", min=0, max=100, step=5, state="sensors.fan"),
            controls.number("fan", param="speed", min=0, max=100, name="fan-number"),
            controls.select("set_mode", param="mode", state="relays.mode"),
            controls.select("set_mode", param="speed", title="Speed"),
            controls.button("reset", params={"hard": True}, confirm="Reset the board now?"),
            controls.form("blink", params={"led": 2, "upload": None}, title="Blink LED 2"),
        ],
        columns=3,
    )
    assert [c.name for c in board.charts] == ["relay-1"]
    # Charts and controls are named apart: the toggle keeps its title's name beside the KPI's.
    assert [c.name for c in board.controls] == [
        "relay-1",
        "fan",
        "fan-number",
        "set-mode",
        "speed",
        "reset",
        "blink-led-2",
    ]
    assert [type(i).__name__ for i in board.items] == ["Chart"] + ["Control"] * 7
    toggle, slider, number, mode, speed, button, form = board.controls
    assert toggle.task == "set_relay" and toggle.source == "relays" and toggle.column == "relay1"
    assert not toggle.is_stream and slider.is_stream and slider.task == "fan"  # the declared name, not the function's
    assert slider.title == "Fan" and mode.title == "Set mode"  # the task's title by default
    assert mode.options == ("auto", "manual") and speed.options == ("low", "high")
    assert button.dangerous and button.question == "Reset the board now?"
    assert controls.button("reset", title="Reset", dangerous=True).question == "Run “Reset” now?"
    assert form.fields == ("times",)  # led and upload are fixed
    assert board.sources == ["relays"] and board.streams == ["sensors"]
    assert board.control("reset") is button
    with pytest.raises(mieruka.NotFoundError, match="no control 'nope'"):
        board.control("nope")
    assert toggle.summary()["params"] == {"relay": 1} and "task" not in toggle.summary()


def test_a_slider_takes_the_parameters_declared_bounds() -> None:
    app = mieruka.App("bounds")

    @app.task
    def dim(level: Annotated[int, Field(ge=0, le=255)]) -> int:
        return level

    board = app.dashboard("d", [controls.slider(dim, param="level")])
    assert (board.controls[0].min, board.controls[0].max) == (0.0, 255.0)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: controls.toggle("set_relay", param="on"), "nothing gives the required parameter 'relay'"),
        (lambda: controls.button("set_relay", params={"relay": 1}), "required parameter 'on'"),
        (lambda: controls.toggle("set_relay", param="of", params={"relay": 1}), "no parameter 'of'"),
        (lambda: controls.button("nothing"), "no task named 'nothing'"),
        (lambda: controls.slider("fan", param="speed"), "a slider needs min= and max="),
        (lambda: controls.select("fan", param="speed"), "no Literal or Enum choices: give options="),
        (lambda: controls.form("blink", params={"led": 1}), "cannot upload files"),
        (lambda: controls.button("blink", params={"led": 1, "upload": "x.txt"}), "cannot send files"),
    ],
)
def test_binding_errors_say_what_to_change(make: Any, message: str) -> None:
    app = device_app()
    with pytest.raises(ConfigError, match=message):
        app.dashboard("d", [make()])


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Control("dial", "t"), "unknown control kind 'dial'"),
        (lambda: controls.toggle("t", param=""), "a toggle needs param="),
        (lambda: Control("button", "t", param="x"), "sets no single parameter"),
        (lambda: controls.toggle("t", param="on", params={"on": True}), "both the control's value and fixed"),
        (lambda: controls.slider("t", param="v", min=5, max=5), r"min \(5\) must be below max \(5\)"),
        (lambda: controls.number("t", param="v", step=0), "step must be > 0"),
        (lambda: controls.number("t", param="v", max=float("inf")), "finite numbers"),
        (lambda: controls.toggle("t", param="on", state="relays"), "write '<source or stream>.<column>'"),
        (lambda: controls.button("t", state="relays.x"), "a button shows no state"),
        (lambda: controls.select("t", param="m", options=[]), "at least one option"),
        (lambda: controls.button("t", confirm="  "), "cannot be empty"),
        (lambda: controls.button("t", params=cast(Any, [("a", 1)])), "params= must be a dict"),
        (lambda: controls.button("t", span=0), "span must be >= 1"),
        (lambda: Dashboard("d", "D", (controls.button("t", name="no spaces"),)), "invalid control name"),
    ],
)
def test_declaration_errors(make: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        mieruka.App("x").dashboard("d", [make()])


def test_a_control_names_its_task_by_function_or_name() -> None:
    with pytest.raises(TypeError, match="cannot tell which task"):
        controls.button(42)
    assert controls.button("reset").task == "reset"


def test_state_names_an_existing_source_or_stream() -> None:
    app = device_app()
    app.dashboard("d", [controls.toggle("set_relay", param="on", params={"relay": 1}, state="nowhere.x")])
    with pytest.raises(ConfigError, match="control 'set-relay': no source named 'nowhere'"):
        app.configure(home=None)
        from mieruka.live.hub import Live

        Live(app.sources, app.dashboards, app.streams.values(), app.settings)


def test_a_dashboard_of_neither_charts_nor_controls_is_refused() -> None:
    with pytest.raises(ConfigError, match="neither a chart nor a control"):
        mieruka.App("x").dashboard("d", cast(Any, ["relays"]))
    with pytest.raises(ConfigError, match="has no charts or controls"):
        mieruka.App("x").dashboard("d", [])


def test_pressed_values_are_checked() -> None:
    app = device_app()
    board = app.dashboard(
        "d",
        [
            controls.toggle("set_relay", param="on", params={"relay": 1}),
            controls.slider("fan", param="speed", min=0, max=100, step=5),
            controls.select("set_mode", param="mode"),
            controls.button("reset", params={"hard": True}),
            controls.form("blink", params={"led": 2, "upload": None}),
        ],
    )
    toggle, slider, select, button, form = board.controls
    assert toggle.parameters(True) == {"relay": 1, "on": True}
    assert slider.parameters(35) == {"speed": 35}
    assert select.parameters("manual") == {"mode": "manual"}
    assert button.parameters() == {"hard": True}
    assert form.parameters(None, {"times": 5}) == {"times": 5, "led": 2, "upload": None}
    bad: list[tuple[Control, Any, dict[str, Any] | None, str]] = [
        (toggle, "yes", None, "a toggle takes true or false"),
        (toggle, None, None, "a toggle needs a value"),
        (slider, 101, None, "above the maximum 100"),
        (slider, -5, None, "below the minimum 0"),
        (slider, 7, None, "not a multiple of the step 5"),
        (slider, True, None, "takes a number"),
        (slider, "50", None, "takes a number"),
        (select, "turbo", None, "'turbo' is not one of 'auto', 'manual'"),
        (button, 1, None, "a button takes no value"),
        (button, None, {"hard": False}, "a button takes no params"),
        (form, None, {"led": 3}, "'led': fixed by the control"),
        (form, None, {"colour": "red"}, "not a field of this form"),
        (form, 3, None, "takes its fields as params"),
    ]
    for control, value, given, message in bad:
        with pytest.raises(ValidationError, match=message):
            control.parameters(value, given)


def test_choices_of_literal_enum_and_optional() -> None:
    assert choices_of(Literal["a", "b"]) == ("a", "b")
    assert choices_of(Speed) == ("low", "high")
    assert choices_of(Speed | None) == ("low", "high")
    assert choices_of(int) == ()


def test_a_controls_state_is_the_last_rows_column() -> None:
    import json
    from zoneinfo import ZoneInfo

    import pandas as pd

    from mieruka.live.tiles import tile
    from mieruka.sources.refresher import SourceState

    app = device_app()
    board = app.dashboard(
        "d",
        [
            controls.toggle("set_relay", param="on", params={"relay": 1}, state="relays.relay1"),
            controls.select("set_mode", param="mode", state="relays.mode", title="Mode"),
        ],
    )
    toggle, mode = board.controls
    source = app.sources.get("relays")
    zone = ZoneInfo("UTC")
    frame = pd.DataFrame({"relay1": [0, 1], "mode": ["auto", "manual"]})
    shown = tile(toggle, source, SourceState("relays", frame=frame, version=3, attempts=4), zone)
    assert shown["kind"] == "state" and shown["control"] == "set-relay" and shown["value"] == 1
    assert type(shown["value"]) is int and shown["attempts"] == 4  # a plain number, not numpy's
    json.dumps(shown)
    assert tile(mode, source, SourceState("relays", frame=frame), zone)["value"] == "manual"
    assert tile(mode, source, SourceState("relays", frame=frame.iloc[:0]), zone)["value"] is None
    assert tile(mode, source, SourceState("relays"), zone)["value"] is None  # not read yet
    missing = tile(mode, source, SourceState("relays", frame=frame[["relay1"]]), zone)
    assert missing["value"] is None and missing["error"] == "no column 'mode' in the table (columns: relay1)"
    failing = tile(mode, source, SourceState("relays", frame=frame, error="the board is unplugged"), zone)
    assert failing["value"] == "manual" and failing["error"] == "the board is unplugged"  # the last good value


def test_a_toggle_reads_its_state_as_the_page_script_does() -> None:
    from mieruka.web.ui.dashboards import is_on

    assert [is_on(v) for v in (1, 0, 2.5, 0.0, True, False, None)] == [True, False, True, False, True, False, False]
    assert [is_on(v) for v in ("on", "ON", "yes", "1", "true", "auto")] == [True] * 6
    assert [is_on(v) for v in ("off", " Off ", "no", "0", "false", "")] == [False] * 6
    script = (Path(mieruka.__file__).parent / "web" / "static" / "dashboards.js").read_text()
    assert '["", "0", "false", "off", "no"]' in script  # the same words, on both sides


def test_a_selects_state_is_matched_to_its_options_as_the_page_script_does() -> None:
    from mieruka.web.ui.dashboards import chosen

    assert chosen((0, 10, 50, 100), 50.0) == 2 and chosen((0, 10, 50, 100), "50") == 2
    assert chosen(("auto", "manual"), "manual") == 1
    assert chosen(("auto", "manual"), "turbo") is None and chosen(("auto",), None) is None
