"""The device: three relays (heater, lamp, pump), a fan and a status LED driven by PWM, and a
temperature sensor. A stand-in for the GPIO pins of a Raspberry Pi, kept in a JSON state file so
that every process of the server (its worker processes too) sees the same board.

On a real board, each setter is a line of gpiozero (https://gpiozero.readthedocs.io):

    from gpiozero import OutputDevice, PWMOutputDevice
    heater = OutputDevice(17, active_high=False)   # relay boards are often active-low
    heater.on() / heater.off() / heater.is_active
    fan = PWMOutputDevice(18); fan.value = 0.4     # 40 %
    led = PWMOutputDevice(12); led.value = 0.25

and the temperature is read from the sensor (a DS18B20 on the 1-Wire bus:
/sys/bus/w1/devices/28-*/temperature, in thousandths of a degree) instead of simulated. gpiozero's
pins belong to the process that opened them: run the panel with the threads executor then (see the
README), so that the tasks and the readings live in the server's one process.

The file is read and written under an exclusive lock (flock, between processes and between
threads alike) and replaced atomically (written beside it, then renamed over it): a reader never
sees half a file, and two presses never lose one another's change.

The temperature is simulated: it approaches the ambient temperature, or ambient + HEAT while the
heater is on, at a rate that the fan speeds up; in thermostat mode the heater follows the target
(with HYSTERESIS either side). Between two changes of the inputs it is computed in closed form
from the last change, so reading it writes nothing (an SD card is not worn by 1 Hz readings); only
a thermostat switching the heater writes.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

Relay = Literal["heater", "lamp", "pump"]
Mode = Literal["manual", "thermostat"]
RELAYS: tuple[Relay, ...] = ("heater", "lamp", "pump")
MODES: tuple[Mode, ...] = ("manual", "thermostat")

AMBIENT = 18.0  # degrees C around the board
HEAT = 12.0  # how much warmer the heater alone makes it, once settled
LOSS = 0.01  # 1/s: how fast the temperature approaches where it is heading, fan off
FAN_LOSS = 0.03  # 1/s more at full fan
HYSTERESIS = 0.5  # degrees either side of the target before the thermostat switches
NOISE = 0.05  # degrees of sensor noise


@dataclass(frozen=True)
class State:
    """The board's outputs and settings, and the temperature `temperature` at time `since` (epoch
    seconds) from which the simulation goes on."""

    relays: dict[str, bool] = field(default_factory=lambda: dict.fromkeys(RELAYS, False))
    fan: int = 0  # percent
    led: int = 0  # percent
    mode: Mode = "manual"
    target: float = 21.0
    temperature: float = AMBIENT
    since: float = 0.0

    def heading(self) -> tuple[float, float]:
        """(where the temperature is heading, the rate in 1/s at which it approaches it)."""
        return AMBIENT + (HEAT if self.relays["heater"] else 0.0), LOSS + FAN_LOSS * self.fan / 100

    def temperature_at(self, now: float) -> float:
        goal, rate = self.heading()
        return goal + (self.temperature - goal) * math.exp(-rate * max(0.0, now - self.since))

    def settled(self, now: float) -> State:
        """The same outputs, with the temperature carried to `now` (before an input changes)."""
        return replace(self, temperature=self.temperature_at(now), since=now)

    def thermostat_switch(self, now: float) -> float | None:
        """When, at or before `now`, the thermostat switches the heater; None if it does not."""
        if self.mode != "thermostat":
            return None
        temperature = self.temperature_at(now)
        on = self.relays["heater"]
        if on and temperature > self.target + HYSTERESIS:
            edge = self.target + HYSTERESIS
        elif not on and temperature < self.target - HYSTERESIS:
            edge = self.target - HYSTERESIS
        else:
            return None
        goal, rate = self.heading()
        # Solve temperature_at(t) == edge for t (the curve is monotonic between changes).
        ratio = (edge - goal) / (self.temperature - goal) if self.temperature != goal else 1.0
        if ratio <= 0 or ratio > 1:
            return self.since
        return min(now, self.since - math.log(ratio) / rate)


class Device:
    """The board, through its state file. Every method is safe to call from several processes and
    threads at once."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock_path = self.path.with_name(self.path.name + ".lock")

    # -- reading ----------------------------------------------------------------------------------
    def state(self) -> State:
        """The current state (the thermostat applied up to now)."""
        now = time.time()
        current = self._load()
        if current.thermostat_switch(now) is None:
            return current
        return self._change(lambda s: s)  # the thermostat switched: write it down

    def readings(self) -> dict[str, float]:
        """What the sensors and the outputs read now: the temperature (with a little noise), the
        target, each relay as 0/1, the fan and LED in percent; and the time, taken before the
        file is read (a change made before it is in the readings)."""
        now = time.time()
        state = self.state()
        noise = NOISE * math.sin(now * 7.3) * math.cos(now * 2.9)
        return {
            "time": now,
            "temperature": round(state.temperature_at(now) + noise, 2),
            "target": state.target,
            **{relay: float(state.relays[relay]) for relay in RELAYS},
            "fan": float(state.fan),
            "led": float(state.led),
            "thermostat": float(state.mode == "thermostat"),
        }

    # -- acting -----------------------------------------------------------------------------------
    def switch(self, relay: Relay, on: bool) -> State:
        if relay not in RELAYS:
            raise ValueError(f"no relay {relay!r}: one of {', '.join(RELAYS)}")
        return self._change(lambda s: replace(s, relays={**s.relays, relay: on}))

    def set_fan(self, percent: int) -> State:
        return self._change(lambda s: replace(s, fan=_percent(percent, "fan")))

    def set_led(self, percent: int) -> State:
        return self._change(lambda s: replace(s, led=_percent(percent, "LED")))

    def set_mode(self, mode: Mode) -> State:
        if mode not in MODES:
            raise ValueError(f"no mode {mode!r}: one of {', '.join(MODES)}")
        return self._change(lambda s: replace(s, mode=mode))

    def set_target(self, celsius: float) -> State:
        if not 5.0 <= celsius <= 40.0:
            raise ValueError(f"a target of {celsius} degrees is out of range (5 to 40)")
        return self._change(lambda s: replace(s, target=float(celsius)))

    def reset(self) -> State:
        """Every output off, manual mode, the target back to 21; the temperature goes on from where it is."""
        return self._change(lambda s: State(temperature=s.temperature, since=s.since))

    # -- the file ---------------------------------------------------------------------------------
    def _change(self, change: Callable[[State], State]) -> State:
        """Apply `change` under the lock: the thermostat's switches up to now first, then the
        temperature carried to now (the inputs change at this instant), then the change."""
        with self._locked():
            now = time.time()
            state = self._load()
            while (edge := state.thermostat_switch(now)) is not None:
                at = state.settled(edge)
                state = replace(at, relays={**at.relays, "heater": not at.relays["heater"]})
            state = change(state.settled(now))
            self._save(state)
            return state

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock_path.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _load(self) -> State:
        try:
            data: dict[str, Any] = json.loads(self.path.read_text())
        except FileNotFoundError:
            return State(since=time.time())
        relays: dict[str, bool] = {relay: bool(data.get("relays", {}).get(relay, False)) for relay in RELAYS}
        mode = data.get("mode")
        return State(
            relays=relays,
            fan=int(data.get("fan", 0)),
            led=int(data.get("led", 0)),
            mode=mode if mode in MODES else "manual",
            target=float(data.get("target", 21.0)),
            temperature=float(data.get("temperature", AMBIENT)),
            since=float(data.get("since", time.time())),
        )

    def _save(self, state: State) -> None:
        fd, temporary = tempfile.mkstemp(prefix=self.path.name, suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as out:
                json.dump(asdict(state), out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


def _percent(value: int, what: str) -> int:
    if not 0 <= value <= 100:
        raise ValueError(f"the {what} level is a percentage from 0 to 100, not {value}")
    return int(value)
