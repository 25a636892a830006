"""A Raspberry Pi device panel (scenario 4): relays, a fan, a status LED and a temperature sensor,
switched from a dashboard's controls beside their live readings, with an audit trail of who
pressed what.

    mieruka run examples/device_panel/app.py            # http://127.0.0.1:8000/dashboards/panel

The board is `device.Device`, a stand-in for GPIO kept in a state file (DEVICE_STATE, default
device.json in the mieruka home); replace its methods with gpiozero's to drive real pins. Each
control is a quick task: it runs at once and its answer shows in place; the readings are streams
sampled once a second, so every open browser sees a change within about a second.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated, Any

from device import Device, Relay, describe
from pydantic import Field

import mieruka
from mieruka import charts

app = mieruka.App(
    "Device panel",
    description="Relays, fan and LED of the board, with its temperature, live.",
    timezone=os.environ.get("MIERUKA_TIMEZONE", "UTC"),
)


def state_file() -> Path:
    """DEVICE_STATE, else device.json in the mieruka home (the server passes MIERUKA_HOME on)."""
    named = os.environ.get("DEVICE_STATE")
    if named:
        return Path(named)
    return Path(os.environ.get("MIERUKA_HOME") or ".mieruka") / "device.json"


board = Device(state_file())
KEEP = "30d"  # presses are jobs: a month of them is kept, then pruned


# -- what the controls run ------------------------------------------------------------------------
@app.task(quick=True, keep=KEEP)
def switch(relay: Relay, on: bool) -> dict[str, Any]:
    """Switch a relay on or off.

    Args:
        relay: Which relay.
        on: On (true) or off (false).
    """
    return describe(board.switch(relay, on))


@app.task(quick=True, keep=KEEP)
def set_fan(percent: Annotated[int, Field(ge=0, le=100)]) -> dict[str, Any]:
    """Set the fan's speed.

    Args:
        percent: 0 (off) to 100 (full speed).
    """
    return describe(board.set_fan(percent))


@app.task(quick=True, keep=KEEP)
def set_led(percent: Annotated[int, Field(ge=0, le=100)]) -> dict[str, Any]:
    """Set the status LED's brightness.

    Args:
        percent: 0 (off) to 100 (full brightness).
    """
    return describe(board.set_led(percent))


@app.task(quick=True, keep=KEEP)
def set_thermostat(on: bool) -> dict[str, Any]:
    """Let the thermostat drive the heater relay (on), or switch it by hand (off).

    Args:
        on: Thermostat mode (true) or manual (false).
    """
    return describe(board.set_mode("thermostat" if on else "manual"))


@app.task(quick=True, keep=KEEP)
def set_target(celsius: Annotated[float, Field(ge=10, le=30)]) -> dict[str, Any]:
    """Set the temperature the thermostat keeps.

    Args:
        celsius: Degrees Celsius, 10 to 30.
    """
    return describe(board.set_target(celsius))


@app.task(quick=True, keep=KEEP, timeout="1m")
def run_pump(seconds: Annotated[float, Field(gt=0, le=30)] = 3.0) -> str:
    """Run the pump for a few seconds, then stop it.

    Args:
        seconds: How long the pump runs, up to 30 s.
    """
    board.switch("pump", True)
    try:
        time.sleep(seconds)
    finally:
        board.switch("pump", False)
    return f"pumped for {seconds:g} s"


@app.task(quick=True, keep=KEEP, allow=["admin"])
def reset() -> dict[str, Any]:
    """Every output off, manual mode, target back to 21 degrees. Admins only."""
    return describe(board.reset())


# -- the readings, once a second -------------------------------------------------------------------
@app.stream(every=1.0, window="10m", title="Temperature")
def temperature() -> dict[str, float]:
    """The sensor's temperature and the thermostat's target, in degrees Celsius."""
    now = board.readings()
    return {"temperature": now["temperature"], "target": now["target"]}


@app.stream(every=1.0, window="10m", title="Relays")
def relays() -> dict[str, float]:
    """Each relay, 1 on and 0 off, and whether the thermostat drives the heater."""
    now = board.readings()
    return {name: now[name] for name in ("heater", "lamp", "pump", "thermostat")}


@app.stream(every=1.0, window="10m", title="Fan and LED")
def levels() -> dict[str, float]:
    """The fan's speed and the LED's brightness, in percent."""
    now = board.readings()
    return {"fan": now["fan"], "led": now["led"]}


app.dashboard(
    "panel",
    [
        charts.stream(temperature, title="Temperature (°C)", window=300, span=2),
        charts.stream(relays, title="Relays", window=300),
        charts.stream(levels, title="Fan and LED (%)", window=300),
    ],
    title="Device panel",
    columns=3,
)
