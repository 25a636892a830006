"""The dashboard controls test app: a stand-in device (relays, a fan, a mode) kept in
CONTROLS_DIR/device.json, tasks that change it, a source and a stream that read it back, and a
dashboard of controls beside the readings; a second dashboard with an allow list."""

from __future__ import annotations

import json
import os
import threading
import time
from enum import Enum
from pathlib import Path
from typing import Any, Literal

import mieruka
from mieruka import charts, controls

DIR = Path(os.environ.get("CONTROLS_DIR", ".controls"))
app = mieruka.App("Controls test", workers=1)
_lock = threading.Lock()
START = {"relay1": 0, "relay2": 1, "fan": 40, "target": 21.5, "mode": "auto", "resets": 0, "blinks": 0}


def device() -> dict[str, Any]:
    path = DIR / "device.json"
    return {**START, **(json.loads(path.read_text()) if path.exists() else {})}


def change(**values: Any) -> dict[str, Any]:
    with _lock:
        state = {**device(), **values}
        DIR.mkdir(parents=True, exist_ok=True)
        tmp = DIR / "device.json.tmp"
        tmp.write_text(json.dumps(state))
        tmp.replace(DIR / "device.json")
        return state


class Colour(str, Enum):
    RED = "red"
    GREEN = "green"


@app.task(quick=True)
def set_relay(relay: int, on: bool) -> dict[str, Any]:
    """Switch a relay."""
    change(**{f"relay{relay}": int(on)})
    return {"relay": relay, "on": on}


@app.task(quick=True)
def set_fan(speed: int) -> str:
    change(fan=speed)
    return f"fan at {speed}%"


@app.task(quick=True)
def set_target(celsius: float) -> float:
    change(target=celsius)
    return celsius


@app.task(quick=True)
def set_mode(mode: Literal["auto", "manual", "off"]) -> str:
    change(mode=mode)
    return mode


@app.task(quick=True)
def set_colour(colour: Colour = Colour.RED) -> str:
    return colour.value


@app.task(quick=True)
def reset(hard: bool = False) -> str:
    change(resets=device()["resets"] + 1, relay1=0, relay2=0)
    return "hard reset" if hard else "soft reset"


@app.task(quick=True)
def blink(led: int, times: int = 3, note: str = "") -> str:
    change(blinks=device()["blinks"] + times)
    return f"LED {led} blinked {times} times"


@app.task(quick=True)
def warm_up(seconds: float = 1.0) -> str:
    time.sleep(seconds)
    return "warm"


@app.task(quick=True)
def overheat() -> None:
    raise RuntimeError("the board is too hot to switch")


@app.task(quick=True, allow=["olga", "admin"])
def unlock(door: int) -> str:
    return f"door {door} open"


@app.task(quick=True)
def set_level(level: int) -> int:
    change(level=level)
    return level


@app.task(quick=True)
def set_level_slowly(level: int) -> int:
    time.sleep(1.5)
    change(level=level)
    return level


@app.source()  # on demand: read at start, then only when asked (a press asks)
def levels() -> list[dict[str, Any]]:
    return [{"level": device().get("level", 0)}]


@app.task(quick=True)
def turn_dial(position: int) -> int:
    change(dial=position)
    return position


@app.stream(every=120.0)  # a slow beat: only a press's sample_now shows a turn soon
def dial() -> dict[str, float]:
    return {"position": float(device().get("dial", 0))}


@app.source(every="1s")
def relays() -> list[dict[str, Any]]:
    return [device()]


@app.stream(every=0.5)
def sensors() -> dict[str, float]:
    state = device()
    return {"fan": float(state["fan"]), "temperature": 20.0 + state["fan"] / 10}


app.dashboard(
    "panel",
    [
        charts.kpi(relays, value="relay1", title="Relay 1"),
        controls.toggle(set_relay, param="on", params={"relay": 1}, state="relays.relay1", title="Relay 1"),
        controls.toggle(set_relay, param="on", params={"relay": 2}, state="relays.relay2", title="Relay 2"),
        controls.slider(set_fan, param="speed", min=0, max=100, step=5, state="sensors.fan", title="Fan"),
        controls.number(set_target, param="celsius", min=10, max=30, step=0.5, state="relays.target"),
        controls.select(set_mode, param="mode", state="relays.mode"),
        controls.button(reset, title="Reset board", params={"hard": True}, confirm="Reset the board now?"),
        controls.form(blink, params={"led": 2}, title="Blink LED 2"),
        controls.button(overheat, title="Overheat"),
        controls.button(warm_up, params={"seconds": 1.5}, title="Warm up"),
        controls.button(unlock, title="Unlock door 1", params={"door": 1}),
        controls.number(set_level, param="level", min=0, max=10, state="levels.level", title="Level"),
        controls.number(set_level_slowly, param="level", min=0, max=10, state="levels.level", title="Slow level"),
        controls.number(turn_dial, param="position", min=0, max=100, state="dial.position", title="Dial"),
        charts.stream(sensors, title="Sensors"),
    ],
    title="Device panel",
    columns=3,
)
app.dashboard(
    "locked",
    [controls.button(reset, title="Reset"), charts.kpi(relays, value="resets")],
    allow=["olga", "admin"],
)
