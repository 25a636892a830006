"""A Raspberry Pi device panel (scenario 4): relays, a fan, a status LED and a temperature sensor,
switched from a dashboard's controls beside their live readings, with an audit trail of who
pressed what.

    mieruka run examples/device_panel/app.py            # http://127.0.0.1:8000/dashboards/panel

The board is `device.Device`, a stand-in for GPIO kept in a state file (DEVICE_STATE, default
device.json in MIERUKA_HOME or ./.mieruka); replace its methods with gpiozero's to drive real pins. Each
control is a quick task: it runs at once and its answer shows in place; the readings are streams
sampled once a second, so every open browser sees a change within about a second.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated

from device import Device, Relay
from pydantic import Field

import mieruka
from mieruka import charts, controls

app = mieruka.App(
    "Device panel",
    description="Relays, fan and LED of the board, with its temperature, live.",
    timezone=os.environ.get("MIERUKA_TIMEZONE", "UTC"),
)


def state_file() -> Path:
    """DEVICE_STATE, else device.json in MIERUKA_HOME, else in ./.mieruka (mieruka's default home).
    Read from the environment, which the server's worker processes inherit: `--home` alone does
    not move the board's file."""
    named = os.environ.get("DEVICE_STATE")
    if named:
        return Path(named).absolute()
    return (Path(os.environ.get("MIERUKA_HOME") or ".mieruka") / "device.json").absolute()


board = Device(state_file())
KEEP = "30d"  # presses are jobs: a month of them is kept, then pruned


# -- what the controls run: each answers in a few words, shown under the control ------------------
@app.task(quick=True, keep=KEEP)
def switch(relay: Relay, on: bool) -> str:
    """Switch a relay on or off.

    Args:
        relay: Which relay.
        on: On (true) or off (false).
    """
    state = board.switch(relay, on)
    note = " (the thermostat drives it)" if relay == "heater" and state.mode == "thermostat" else ""
    return f"{relay} {'on' if on else 'off'}{note}"


@app.task(quick=True, keep=KEEP)
def set_fan(percent: Annotated[int, Field(ge=0, le=100)]) -> str:
    """Set the fan's speed.

    Args:
        percent: 0 (off) to 100 (full speed).
    """
    return f"fan at {board.set_fan(percent).fan} %"


@app.task(quick=True, keep=KEEP)
def set_led(percent: Annotated[int, Field(ge=0, le=100)]) -> str:
    """Set the status LED's brightness.

    Args:
        percent: 0 (off) to 100 (full brightness).
    """
    return f"LED at {board.set_led(percent).led} %"


@app.task(quick=True, keep=KEEP)
def set_thermostat(on: bool) -> str:
    """Let the thermostat drive the heater relay (on), or switch it by hand (off).

    Args:
        on: Thermostat mode (true) or manual (false).
    """
    state = board.set_mode("thermostat" if on else "manual")
    return f"thermostat keeps {state.target:g} °C" if on else "manual: the heater is switched by hand"


@app.task(quick=True, keep=KEEP)
def set_target(celsius: Annotated[float, Field(ge=10, le=30)]) -> str:
    """Set the temperature the thermostat keeps.

    Args:
        celsius: Degrees Celsius, 10 to 30.
    """
    return f"target {board.set_target(celsius).target:g} °C"


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
def reset() -> str:
    """Every output off, manual mode, target back to 21 degrees. Admins only."""
    state = board.reset()
    return f"every output off, manual, target {state.target:g} °C"


# -- the readings, once a second -------------------------------------------------------------------
@app.stream(every=1.0, window="10m", title="Temperature")
def temperature() -> dict[str, float]:
    """The sensor's temperature and the thermostat's target, in degrees Celsius."""
    now = board.readings()
    return {name: now[name] for name in ("time", "temperature", "target")}


@app.stream(every=1.0, window="10m", title="Relays")
def relays() -> dict[str, float]:
    """Each relay, 1 on and 0 off, and whether the thermostat drives the heater."""
    now = board.readings()
    return {name: now[name] for name in ("time", "heater", "lamp", "pump", "thermostat")}


@app.stream(every=1.0, window="10m", title="Fan and LED")
def levels() -> dict[str, float]:
    """The fan's speed and the LED's brightness, in percent."""
    now = board.readings()
    return {name: now[name] for name in ("time", "fan", "led")}


app.dashboard(
    "panel",
    [
        controls.toggle(switch, param="on", params={"relay": "heater"}, state="relays.heater", title="Heater"),
        controls.toggle(switch, param="on", params={"relay": "lamp"}, state="relays.lamp", title="Lamp"),
        controls.toggle(switch, param="on", params={"relay": "pump"}, state="relays.pump", title="Pump"),
        controls.toggle(set_thermostat, param="on", state="relays.thermostat", title="Thermostat"),
        controls.number(set_target, param="celsius", step=0.5, state="temperature.target", title="Target (°C)"),
        controls.slider(set_fan, param="percent", step=5, state="levels.fan", title="Fan (%)"),
        controls.select(set_led, param="percent", options=[0, 10, 50, 100], state="levels.led", title="LED (%)"),
        controls.form(run_pump, title="Run the pump"),
        controls.button(reset, title="Reset the board", confirm="Switch every output off and go back to manual?"),
        charts.stream(temperature, title="Temperature (°C)", window=300, span=3),
        charts.stream(relays, title="Relays (1 on, 0 off)", window=300, span=2),
        charts.stream(levels, title="Fan and LED (%)", window=300, span=2),
    ],
    title="Device panel",
    description="Controls act on the board at once; the readings are taken once a second.",
    columns=4,
)
