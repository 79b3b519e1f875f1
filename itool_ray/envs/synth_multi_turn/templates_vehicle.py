"""Templates of ``VehicleControlAPI``, and those joining it to ``MathAPI``, ``TwitterAPI``,
``TicketAPI`` and ``MessageAPI`` (registered at import, in this order)."""

from __future__ import annotations

from itool_ray.envs.synth_multi_turn.scenarios import _car_distances
from itool_ray.envs.synth_multi_turn.templating import (
    _Ctx,
    _Draft,
    _join,
    _login,
    _msg_people,
    _template,
)
from itool_ray.envs.synth_multi_turn.vocabulary import (
    _CAR_CITIES,
    _DOORS,
    _MATH,
    _MSG,
    _STREETS,
    _TK,
    _TW,
    _VC,
    _c,
    _one,
)


def _address(ctx: _Ctx) -> str:
    return f"{ctx.rng.randint(1, 999)} {ctx.rng.choice(_STREETS)}, {ctx.rng.choice(_CAR_CITIES)}"


def _unlocked(ctx: _Ctx) -> list[str]:
    return [d for d, s in ctx.inst(_VC).doorStatus.items() if s == "unlocked"]


@_template("vc.start", _VC)
def _vc_start(ctx: _Ctx) -> _Draft | None:
    if ctx.inst(_VC).engine_state != "stopped":
        return None
    doors = _unlocked(ctx)
    text = _one(
        ctx.rng,
        "Lock all the doors, press the brake pedal fully and start the engine.",
        "Get the car running: doors locked, brake fully pressed, then ignition on.",
    )
    lock = [_c("lockDoors", unlock=False, door=doors)] if doors else []
    calls = [
        *lock,
        _c("pressBrakePedal", pedalPosition=1.0),
        _c("startEngine", ignitionMode="START"),
    ]
    return _Draft(text, calls, lambda w: w.instances[_VC].engine_state == "running", True)


@_template("vc.lock", _VC)
def _vc_lock(ctx: _Ctx) -> _Draft | None:
    if not _unlocked(ctx):
        return None
    text = _one(ctx.rng, "Lock every door of the car.", "Make sure all four doors are locked.")
    calls = [_c("lockDoors", unlock=False, door=list(_DOORS))]
    return _Draft(text, calls, lambda w: w.instances[_VC].remainingUnlockedDoors == 0, True)


@_template("vc.unlock", _VC)
def _vc_unlock(ctx: _Ctx) -> _Draft | None:
    locked = [d for d, s in ctx.inst(_VC).doorStatus.items() if s == "locked"]
    if not locked:
        return None
    door = ctx.rng.choice(locked)
    said = door.replace("_", " ")
    text = _one(ctx.rng, f"Unlock the {said} door.", f"Please open the lock on the {said} door.")
    return _Draft(text, [_c("lockDoors", unlock=True, door=[door])], changes=True)


@_template("vc.headlights", _VC)
def _vc_headlights(ctx: _Ctx) -> _Draft | None:
    mode = "off" if ctx.inst(_VC).headLightStatus == "on" else "on"
    text = _one(ctx.rng, f"Turn the headlights {mode}.", f"Switch {mode} the headlights, please.")
    return _Draft(text, [_c("setHeadlights", mode=mode)], changes=True)


@_template("vc.climate", _VC)
def _vc_climate(ctx: _Ctx) -> _Draft | None:
    unit = ctx.rng.choice(("celsius", "fahrenheit"))
    temp = float(ctx.rng.randint(17, 27) if unit == "celsius" else ctx.rng.randint(62, 80))
    fan, mode = ctx.rng.randrange(10, 101, 10), ctx.rng.choice(("auto", "cool", "heat"))
    text = _one(
        ctx.rng,
        f"Set the climate control to {temp:.0f} degrees {unit}, fan speed {fan}, {mode} mode.",
        f"Make it {temp:.0f} {unit} inside with the fan at {fan} in {mode} mode.",
    )
    call = _c("adjustClimateControl", temperature=temp, unit=unit, fanSpeed=fan, mode=mode)
    return _Draft(text, [call], changes=True)


@_template("vc.fill", _VC)
def _vc_fill(ctx: _Ctx) -> _Draft | None:
    room = 50 - ctx.inst(_VC).fuelLevel
    if room < 2:
        return None
    amount = float(ctx.rng.randint(1, int(room)))
    text = _one(
        ctx.rng,
        f"Add {amount:.0f} gallons of fuel.",
        f"Fill up the tank with {amount:.0f} more gallons.",
    )
    return _Draft(text, [_c("fillFuelTank", fuelAmount=amount)], changes=True)


@_template("vc.fill_liters", _VC)
def _vc_fill_liters(ctx: _Ctx) -> _Draft | None:
    room = 50 - ctx.inst(_VC).fuelLevel
    if room < 5:
        return None
    liters = float(ctx.rng.randint(5, int(room * 3.7)))
    gallons = ctx.peek([_c("liter_to_gallon", liter=liters)])[1][0]["gallon"]
    if gallons > room:
        return None
    text = _one(
        ctx.rng,
        f"I bought {liters:.0f} liters of fuel; convert that to gallons and put it in the tank.",
        f"Pour {liters:.0f} liters into the tank (the tank takes gallons).",
    )
    calls = [_c("liter_to_gallon", liter=liters), _c("fillFuelTank", fuelAmount=gallons)]
    return _Draft(text, calls, changes=True)


@_template("vc.tires", _VC)
def _vc_tires(ctx: _Ctx) -> _Draft | None:
    text = _one(ctx.rng, "Check my tire pressure.", "Are my tires properly inflated?")
    return _Draft(text, [_c("check_tire_pressure")])


@_template("vc.tire_shop", _VC)
def _vc_tire_shop(ctx: _Ctx) -> _Draft | None:
    tires = ctx.peek([_c("check_tire_pressure")])[1][0]
    text = _one(
        ctx.rng,
        "Check the tire pressure; if it is not healthy, find the nearest tire shop and "
        "navigate there.",
        "If my tires need attention, set the navigation to the closest tire shop (check the "
        "pressure first).",
    )
    calls = [_c("check_tire_pressure")]
    if not tires["healthy_tire_pressure"]:
        shop = ctx.peek([_c("find_nearest_tire_shop")])[1][0]["shopLocation"]
        calls += [_c("find_nearest_tire_shop"), _c("set_navigation", destination=shop)]
    return _Draft(text, calls)


@_template("vc.navigate", _VC)
def _vc_navigate(ctx: _Ctx) -> _Draft | None:
    place = _address(ctx)
    text = _one(ctx.rng, f"Navigate to {place}.", f"Set the GPS destination to {place}.")
    return _Draft(text, [_c("set_navigation", destination=place)], changes=True)


@_template("vc.distance", _VC)
def _vc_distance(ctx: _Ctx) -> _Draft | None:
    a, b, _ = ctx.rng.choice(_car_distances())
    za, zb = (ctx.peek([_c("get_zipcode_based_on_city", city=c)])[1][0]["zipcode"] for c in (a, b))
    text = _one(
        ctx.rng,
        f"How far is it from {a} to {b}?",
        f"Estimate the driving distance between {a} and {b}.",
    )
    calls = [
        _c("get_zipcode_based_on_city", city=a),
        _c("get_zipcode_based_on_city", city=b),
        _c("estimate_distance", cityA=za, cityB=zb),
    ]
    return _Draft(text, calls)


@_template("vc.range", _VC)
def _vc_range(ctx: _Ctx) -> _Draft | None:
    miles = float(ctx.rng.randrange(50, 1200, 10))
    text = _one(
        ctx.rng,
        f"Can I drive {miles:.0f} miles on the fuel I have now?",
        f"Is my current fuel enough for a {miles:.0f}-mile trip?",
    )
    return _Draft(text, [_c("estimate_drive_feasibility_by_mileage", distance=miles)])


@_template("vc.parking_brake", _VC)
def _vc_parking_brake(ctx: _Ctx) -> _Draft | None:
    engaged = ctx.inst(_VC).parkingBrakeStatus == "engaged"
    mode = "release" if engaged else "engage"
    text = _one(ctx.rng, f"{mode.title()} the parking brake.", f"Please {mode} the handbrake.")
    return _Draft(text, [_c("activateParkingBrake", mode=mode)], changes=True)


@_template("vc.cruise", _VC)
def _vc_cruise(ctx: _Ctx) -> _Draft | None:
    if ctx.inst(_VC).engine_state != "running":
        return None
    speed, gap = float(ctx.rng.randrange(30, 121, 5)), float(ctx.rng.randrange(20, 100, 5))
    text = _one(
        ctx.rng,
        f"Turn on cruise control at {speed:.0f} mph, keeping {gap:.0f} meters from the car ahead.",
        f"Activate cruise control: {speed:.0f} mph with a {gap:.0f} m gap.",
    )
    call = _c("setCruiseControl", speed=speed, activate=True, distanceToNextVehicle=gap)
    return _Draft(text, [call], changes=True)


_DISPLAY = (
    ("fuel", "fuel level"),
    ("battery", "battery voltage"),
    ("doors", "door lock status"),
    ("climate", "climate settings"),
    ("headlights", "headlight status"),
    ("parkingBrake", "parking brake status"),
    ("engine", "engine state"),
)


@_template("vc.status", _VC)
def _vc_status(ctx: _Ctx) -> _Draft | None:
    option, said = ctx.rng.choice(_DISPLAY)
    text = _one(ctx.rng, f"What's the car's {said}?", f"Display the {said} of the vehicle.")
    return _Draft(text, [_c("displayCarStatus", option=option)])


@_template("vc.fuel_liters", _VC)
def _vc_fuel_liters(ctx: _Ctx) -> _Draft | None:
    fuel = ctx.inst(_VC).fuelLevel
    text = _one(
        ctx.rng,
        "How many liters of fuel are in the tank right now?",
        "Read the fuel gauge and tell me the amount in liters.",
    )
    calls = [_c("displayCarStatus", option="fuel"), _c("gallon_to_liter", gallon=fuel)]
    return _Draft(text, calls)


@_template("vc_math.tire_average", _VC, _MATH)
def _vc_math_tire_average(ctx: _Ctx) -> _Draft | None:
    car = ctx.inst(_VC)
    pressures = [
        car.frontLeftTirePressure,
        car.frontRightTirePressure,
        car.rearLeftTirePressure,
        car.rearRightTirePressure,
    ]
    text = _one(
        ctx.rng,
        "Check the four tire pressures and give me their average.",
        "What's the mean pressure across my tires?",
    )
    return _Draft(text, [_c("check_tire_pressure"), _c("mean", numbers=pressures)])


@_template("vc_tw.navigate_tweet", _VC, _TW)
def _vc_tw_navigate_tweet(ctx: _Ctx) -> _Draft | None:
    pre, login = _login(ctx, _TW)
    place = _address(ctx)
    city = place.rpartition(", ")[2]
    content = f"On my way to {city}!"
    text = _one(
        ctx.rng,
        f"Navigate to {place}, then tweet '{content}'",
        f"Set the destination to {place} and post '{content}' on Twitter.",
    )
    calls = [
        _c("set_navigation", destination=place),
        *login,
        _c("post_tweet", content=content, tags=[], mentions=[]),
    ]
    return _Draft(_join(pre, text), calls, changes=True)


@_template("vc_tk.tire_ticket", _VC, _TK)
def _vc_tk_tire_ticket(ctx: _Ctx) -> _Draft | None:
    pre, login = _login(ctx, _TK)
    p = ctx.rng.randint(2, 5)
    title, desc = "Tire pressure check", "Tire pressure reading requested after the check."
    text = _one(
        ctx.rng,
        f"Check my tire pressure, then open a ticket titled '{title}' with the description "
        f"'{desc}' at priority {p}.",
        f"After checking the tires, file a priority {p} ticket '{title}': '{desc}'",
    )
    calls = [
        _c("check_tire_pressure"),
        *login,
        _c("create_ticket", title=title, description=desc, priority=p),
    ]
    return _Draft(_join(pre, text), calls, changes=True)


@_template("vc_msg.eta", _VC, _MSG)
def _vc_msg_eta(ctx: _Ctx) -> _Draft | None:
    pre, login = _login(ctx, _MSG)
    place, person = _address(ctx), ctx.rng.choice(_msg_people(ctx))
    uid, note = ctx.inst(_MSG).user_map[person], f"Heading to {place} now."
    text = _one(
        ctx.rng,
        f"Navigate to {place} and message {person} '{note}'",
        f"Set the GPS to {place}, then send {person} the message '{note}'",
    )
    calls = [
        _c("set_navigation", destination=place),
        *login,
        _c("get_user_id", user=person),
        _c("send_message", receiver_id=uid, message=note),
    ]
    return _Draft(_join(pre, text), calls, changes=True)
