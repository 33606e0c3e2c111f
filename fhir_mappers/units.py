"""Table-driven UCUM unit normalisation and conversion for clinical quantities.

Every known unit has a canonical UCUM code, a dimension and a linear map to that dimension's
base unit (``base = value * factor + offset``; the offset is non-zero for temperatures only).
Units convert within a dimension; mass, substance and equivalent concentrations also convert
into each other given a molar mass and/or valence. Anything else yields ``None``, never a guess.

Deliberately not convertible, though UCUM annotations or habit treat them as equal:

- ``mL/min/{1.73_m2}`` (eGFR normalised to body surface) and ``mL/min`` (a plain flow);
- ``[IU]`` (WHO arbitrary units: TSH, insulin, vitamin D) and ``U`` (enzyme activity);
- ``meq/L`` and ``mmol/L`` unless the valence is given.

Not known at all, so ``None``: ``mmol/mol`` (HbA1c IFCC is not a rescaled NGSP ``%``), ``G/L``
(giga per litre, or a shouted ``g/L``), annotations such as ``{score}``.

Case: UCUM is case-sensitive. Symbols shorter than three characters must match exactly
(``Pa``/``PA``, ``mg``/``Mg``, ``mm``/``Mm``, ``g``/``G`` name different units); longer ones
(``MG/DL``, ``mmol/l``, ``CEL``) are matched case-insensitively when that is unambiguous.
"""

from __future__ import annotations

import math
import re
from enum import StrEnum
from functools import lru_cache
from typing import NamedTuple


class Dimension(StrEnum):
    """What a unit measures; units convert only within one (bar the molar bridges)."""

    MASS_CONCENTRATION = "mass concentration"  # base g/L
    SUBSTANCE_CONCENTRATION = "substance concentration"  # base mol/L
    EQUIVALENT_CONCENTRATION = "equivalent concentration"  # base eq/L
    NUMBER_CONCENTRATION = "number concentration"  # base /L
    CATALYTIC_CONCENTRATION = "catalytic concentration"  # base U/L
    ARBITRARY_CONCENTRATION = "arbitrary concentration"  # base [IU]/L
    TEMPERATURE = "temperature"  # base K
    MASS = "mass"  # base g
    LENGTH = "length"  # base m
    PRESSURE = "pressure"  # base Pa
    FREQUENCY = "frequency"  # base /min
    FRACTION = "fraction"  # base 1
    MASS_PER_AREA = "mass per area"  # base kg/m2 (BMI)
    NORMALISED_FLOW = "flow per 1.73 m2 body surface"  # base mL/min/{1.73_m2} (eGFR)
    FLOW = "volume flow"  # base mL/min
    TIME = "time"  # base s
    VOLUME = "volume"  # base L


class _Unit(NamedTuple):
    dimension: Dimension
    factor: float  # base = value * factor + offset
    offset: float


_Row = tuple[str, float, float, tuple[str, ...]]


def _u(code: str, factor: float, *aliases: str, offset: float = 0.0) -> _Row:
    """A table row: canonical UCUM code, factor (and offset) to the base unit, synonyms."""
    return code, factor, offset, aliases


_DAY = 86_400.0
_YEAR = 365.25 * _DAY  # UCUM 'a' is the Julian year; 'mo' is a twelfth of it
_LB = 453.592_37  # g
_IN = 0.0254  # m
_MM_HG = 133.322  # Pa, as UCUM defines m[Hg] = 133.3220 kPa
_PSI = _LB / 1000 * 9.806_65 / _IN**2  # Pa: [lbf_av]/[in_i]2
_FAHRENHEIT = 5 / 9

_TABLE: dict[Dimension, tuple[_Row, ...]] = {
    Dimension.MASS_CONCENTRATION: (
        _u("g/L", 1.0, "gm/L"),
        _u("g/dL", 10.0, "gm/dL"),
        _u("mg/mL", 1.0),
        _u("mg/dL", 1e-2, "mg%"),
        _u("mg/L", 1e-3),
        _u("ug/mL", 1e-3),
        _u("ug/dL", 1e-5),
        _u("ug/L", 1e-6),
        _u("ng/mL", 1e-6),
        _u("ng/dL", 1e-8),
        _u("ng/L", 1e-9),
        _u("pg/mL", 1e-9),
    ),
    Dimension.SUBSTANCE_CONCENTRATION: (
        _u("mol/L", 1.0),
        _u("mmol/L", 1e-3),
        _u("umol/L", 1e-6),
        _u("nmol/L", 1e-9),
        _u("pmol/L", 1e-12),
    ),
    Dimension.EQUIVALENT_CONCENTRATION: (
        _u("eq/L", 1.0, "Eq/L"),
        _u("meq/L", 1e-3, "mEq/L"),
    ),
    Dimension.NUMBER_CONCENTRATION: (
        _u("/L", 1.0, "{cells}/L", "cells/L"),
        _u("/mL", 1e3, "{cells}/mL", "cells/mL"),
        _u("/uL", 1e6, "{cells}/uL", "cells/uL"),
        _u("/mm3", 1e6, "{cells}/mm3", "cells/mm3"),
        _u("10*3/uL", 1e9, "K/uL", "thou/uL", "10*3/mm3", "K/mm3", "thou/mm3"),
        _u("10*6/uL", 1e12, "M/uL", "mill/uL", "million/uL", "10*6/mm3", "M/mm3"),
        _u("10*9/L", 1e9),
        _u("10*12/L", 1e12),
    ),
    Dimension.CATALYTIC_CONCENTRATION: (
        _u("U/L", 1.0, "units/L"),
        _u("mU/L", 1e-3),
        _u("U/mL", 1e3),
    ),
    Dimension.ARBITRARY_CONCENTRATION: (
        _u("[IU]/L", 1.0, "IU/L"),
        _u("[IU]/mL", 1e3, "IU/mL"),
        _u("m[IU]/L", 1e-3, "mIU/L"),
        _u("m[IU]/mL", 1.0, "mIU/mL"),
        _u("u[IU]/mL", 1e-3, "uIU/mL"),
    ),
    Dimension.TEMPERATURE: (
        _u("K", 1.0),
        _u("Cel", 1.0, "C", "°C", "degC", "degreesC", "Celsius", offset=273.15),
        _u(
            "[degF]",
            _FAHRENHEIT,
            *("F", "°F", "degF", "degreesF", "Fahrenheit"),
            offset=273.15 - 32 * _FAHRENHEIT,
        ),
    ),
    Dimension.MASS: (
        _u("kg", 1e3, "KG", "Kg", "kgs"),
        _u("g", 1.0, "gm"),
        _u("mg", 1e-3),
        _u("ug", 1e-6),
        _u("ng", 1e-9),
        _u("pg", 1e-12),
        _u("[lb_av]", _LB, "lb", "lbs", "pound", "pounds"),
        _u("[oz_av]", _LB / 16, "oz"),
    ),
    Dimension.LENGTH: (
        _u("m", 1.0),
        _u("cm", 1e-2),
        _u("mm", 1e-3),
        _u("[in_i]", _IN, "in", "inch", "inches"),
        _u("[ft_i]", 12 * _IN, "ft", "feet"),
    ),
    Dimension.PRESSURE: (
        _u("Pa", 1.0),
        _u("kPa", 1e3),
        _u("mm[Hg]", _MM_HG, "mmHg"),
        _u("cm[H2O]", 98.0665, "cmH2O"),
        _u("[psi]", _PSI, "psi"),
    ),
    Dimension.FREQUENCY: (
        _u("/s", 60.0),
        _u(
            "/min",
            1.0,
            *("{beats}/min", "{breaths}/min", "{beat}/min", "{breath}/min", "bpm"),
            *("beats/min", "breaths/min", "beats/minute", "breaths/minute", "per min"),
        ),
        _u("/h", 1 / 60, "/hr"),
        _u("/d", 1 / 1440),
    ),
    Dimension.FRACTION: (
        _u("1", 1.0),
        _u("%", 1e-2, "percent"),
    ),
    Dimension.MASS_PER_AREA: (_u("kg/m2", 1.0, "kg/m^2"),),
    Dimension.NORMALISED_FLOW: (
        _u("mL/min/{1.73_m2}", 1.0, "mL/min/1.73m2", "mL/min/1.73_m2", "mL/min/{1.73m2}"),
        _u("mL/s/{1.73_m2}", 60.0, "mL/s/1.73m2", "mL/s/1.73_m2", "mL/s/{1.73m2}"),
    ),
    Dimension.FLOW: (
        _u("mL/min", 1.0),
        _u("mL/h", 1 / 60, "mL/hr"),
        _u("mL/s", 60.0),
        _u("L/min", 1e3),
    ),
    Dimension.TIME: (
        _u("s", 1.0, "sec", "secs", "seconds"),
        _u("min", 60.0, "mins", "minute", "minutes"),
        _u("h", 3600.0, "hr", "hrs", "hour", "hours"),
        _u("d", _DAY, "day", "days"),
        _u("wk", 7 * _DAY, "wks", "week", "weeks"),
        _u("mo", _YEAR / 12, "mos", "month", "months"),
        _u("a", _YEAR, "yr", "yrs", "year", "years"),
    ),
    Dimension.VOLUME: (
        _u("L", 1.0, "l"),
        _u("dL", 0.1, "dl"),
        _u("mL", 1e-3, "ml", "ML", "cc"),
        _u("uL", 1e-6),
        _u("fL", 1e-15),
    ),
}

_SUPERSCRIPTS = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹", "0123456789")
_ASCII = str.maketrans({"µ": "u", "μ": "u", "²": "2", "³": "3"})
_SUPERSCRIPT_POWER = re.compile(r"10([⁰¹²³⁴⁵⁶⁷⁸⁹]+)")
_POWER_OF_TEN = re.compile(r"^[xX×]?10(?:\^|\*\*?|[eE])(\d+)")  # x10^3, 10E3, 10**3 → 10*3
_MC_MICRO = re.compile(r"(^|/)mc(?=[a-zA-Z\[])")  # mcg, mcmol/L, /mcL → ug, umol/L, /uL
_MIN_FOLDED_LENGTH = 3
_CASE_AMBIGUOUS = frozenset({"G/L"})  # giga per litre (European cell counts), or a shouted g/L


def _clean(unit: str) -> str:
    """Spelling-level normalisation: no whitespace, ASCII micro, powers of ten as ``10*n``."""
    unit = "".join(unit.split())
    unit = _SUPERSCRIPT_POWER.sub(lambda m: "10*" + m.group(1).translate(_SUPERSCRIPTS), unit)
    unit = _POWER_OF_TEN.sub(r"10*\1", unit.translate(_ASCII))
    return _MC_MICRO.sub(r"\1u", unit)


def _build() -> tuple[dict[str, _Unit], dict[str, str], dict[str, str]]:
    units: dict[str, _Unit] = {}
    aliases: dict[str, str] = {}
    for dimension, rows in _TABLE.items():
        for code, factor, offset, synonyms in rows:
            units[code] = _Unit(dimension, factor, offset)
            for alias in (code, *synonyms):
                aliases[_clean(alias)] = code
    folded: dict[str, set[str]] = {}
    for alias, code in aliases.items():
        if len(alias) >= _MIN_FOLDED_LENGTH:
            folded.setdefault(_clean(alias.casefold()), set()).add(code)
    unambiguous = {key: codes.pop() for key, codes in folded.items() if len(codes) == 1}
    return units, aliases, unambiguous


_UNITS, _ALIASES, _FOLDED = _build()


@lru_cache(maxsize=4096)
def _normalise_spelling(unit: str) -> str | None:
    cleaned = _clean(unit)
    code = _ALIASES.get(cleaned)
    if code is None and len(cleaned) >= _MIN_FOLDED_LENGTH and cleaned not in _CASE_AMBIGUOUS:
        code = _FOLDED.get(_clean(cleaned.casefold()))
    return code


def normalise_unit(unit: str | None) -> str | None:
    """The canonical UCUM code for a unit as EHRs write it (``'mg/dl'`` → ``'mg/dL'``), or None."""
    if not isinstance(unit, str):
        return None
    code = _ALIASES.get(unit)
    return code if code is not None else _normalise_spelling(unit)


def is_known_unit(unit: str | None) -> bool:
    """Whether ``unit`` normalises to a unit this module can convert."""
    return normalise_unit(unit) is not None


def unit_dimension(unit: str | None) -> Dimension | None:
    """The dimension ``unit`` measures, or None when the unit is unknown."""
    code = normalise_unit(unit)
    return None if code is None else _UNITS[code].dimension


def _per_mole(dimension: Dimension, molar_mass: float | None, valence: int | None) -> float | None:
    """The base amount of ``dimension`` that 1 mol/L corresponds to, or None if not derivable."""
    if dimension is Dimension.SUBSTANCE_CONCENTRATION:
        return 1.0
    if dimension is Dimension.MASS_CONCENTRATION:
        valid = molar_mass is not None and math.isfinite(molar_mass) and molar_mass > 0
        return molar_mass if valid else None
    if dimension is Dimension.EQUIVALENT_CONCENTRATION and valence:
        return float(abs(valence))
    return None


def convert(
    value: float,
    from_unit: str | None,
    to_unit: str,
    *,
    molar_mass: float | None = None,
    valence: int | None = None,
) -> float | None:
    """``value`` (in ``from_unit``) expressed in ``to_unit``; None if unknown or incompatible.

    Mass ↔ substance concentration needs ``molar_mass`` (g/mol); equivalent ↔ substance
    concentration needs ``valence`` (its sign is ignored); mass ↔ equivalent needs both.
    Non-finite inputs and results give None.
    """
    source_code = normalise_unit(from_unit)
    target_code = normalise_unit(to_unit)
    if source_code is None or target_code is None or not math.isfinite(value):
        return None
    if source_code == target_code:
        return float(value)
    source, target = _UNITS[source_code], _UNITS[target_code]
    base = value * source.factor + source.offset
    if source.dimension is not target.dimension:
        per_source = _per_mole(source.dimension, molar_mass, valence)
        per_target = _per_mole(target.dimension, molar_mass, valence)
        if per_source is None or per_target is None:
            return None
        base = base / per_source * per_target
    result = (base - target.offset) / target.factor
    return result if math.isfinite(result) else None
