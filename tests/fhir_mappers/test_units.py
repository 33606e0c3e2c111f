"""UCUM unit normalisation and conversion: clinical reference values, synonyms, refusals."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fhir_mappers.units import convert, is_known_unit, normalise_unit, unit_dimension

REL = 1e-9

# The specification of which units inter-convert, written independently of the module's table.
GROUPS: dict[str, tuple[str, ...]] = {
    "mass concentration": (
        "g/L",
        "g/dL",
        "mg/mL",
        "mg/dL",
        "mg/L",
        "ug/mL",
        "ug/dL",
        "ug/L",
        "ng/mL",
        "ng/dL",
        "ng/L",
        "pg/mL",
    ),
    "substance concentration": ("mol/L", "mmol/L", "umol/L", "nmol/L", "pmol/L"),
    "equivalent concentration": ("eq/L", "meq/L"),
    "number concentration": (
        "/L",
        "/mL",
        "/uL",
        "/mm3",
        "10*3/uL",
        "10*6/uL",
        "10*9/L",
        "10*12/L",
    ),
    "catalytic concentration": ("U/L", "mU/L", "U/mL"),
    "arbitrary concentration": ("[IU]/L", "[IU]/mL", "m[IU]/L", "m[IU]/mL", "u[IU]/mL"),
    "temperature": ("K", "Cel", "[degF]"),
    "mass": ("kg", "g", "mg", "ug", "ng", "pg", "[lb_av]", "[oz_av]"),
    "length": ("m", "cm", "mm", "[in_i]", "[ft_i]"),
    "pressure": ("Pa", "kPa", "mm[Hg]", "cm[H2O]", "[psi]"),
    "frequency": ("/s", "/min", "/h", "/d"),
    "fraction": ("1", "%"),
    "body mass index": ("kg/m2",),
    "eGFR": ("mL/min/{1.73_m2}", "mL/s/{1.73_m2}"),
    "flow": ("mL/min", "mL/h", "mL/s", "L/min"),
    "time": ("s", "min", "h", "d", "wk", "mo", "a"),
    "volume": ("L", "dL", "mL", "uL", "fL"),
}
CHEMICAL = {"mass concentration", "substance concentration", "equivalent concentration"}
ALL_UNITS = [unit for units in GROUPS.values() for unit in units]


# --- reference conversions -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "from_unit", "to_unit", "molar_mass", "expected"),
    [
        pytest.param(1.0, "mg/dL", "umol/L", 113.12, 88.4017, id="creatinine"),
        pytest.param(100.0, "mg/dL", "mmol/L", 180.16, 5.55062, id="glucose"),
        pytest.param(14.0, "mg/dL", "mmol/L", 28.014, 4.99750, id="urea-nitrogen-as-N2"),
        pytest.param(200.0, "mg/dL", "mmol/L", 386.65, 5.17263, id="cholesterol"),
        pytest.param(88.4017, "umol/L", "mg/dL", 113.12, 1.0, id="creatinine-back"),
        pytest.param(5.55062, "mmol/L", "mg/dL", 180.16, 100.0, id="glucose-back"),
    ],
)
def test_mass_and_substance_concentrations_convert_through_the_molar_mass(
    value: float, from_unit: str, to_unit: str, molar_mass: float, expected: float
) -> None:
    assert convert(value, from_unit, to_unit, molar_mass=molar_mass) == pytest.approx(
        expected, rel=1e-5
    )


@pytest.mark.parametrize(
    ("value", "from_unit", "to_unit", "expected"),
    [
        (14.0, "g/dL", "g/L", 140.0),
        (1.0, "ug/mL", "mg/L", 1.0),
        (1.0, "ng/mL", "ug/L", 1.0),
        (250.0, "pg/mL", "ng/L", 250.0),
        (1.0, "ug/dL", "ng/mL", 10.0),
        (7.5, "10*3/uL", "10*9/L", 7.5),
        (7.5, "10*3/uL", "/uL", 7500.0),
        (7500.0, "/mm3", "10*9/L", 7.5),
        (4.5, "10*6/uL", "10*12/L", 4.5),
        (98.6, "[degF]", "Cel", 37.0),
        (37.0, "Cel", "[degF]", 98.6),
        (-40.0, "[degF]", "Cel", -40.0),
        (212.0, "[degF]", "Cel", 100.0),
        (0.0, "Cel", "K", 273.15),
        (310.15, "K", "[degF]", 98.6),
        (154.0, "[lb_av]", "kg", 69.85322498),
        (16.0, "[oz_av]", "[lb_av]", 1.0),
        (70.0, "[in_i]", "cm", 177.8),
        (1.0, "[ft_i]", "[in_i]", 12.0),
        (1750.0, "mm", "m", 1.75),
        (120.0, "mm[Hg]", "kPa", 15.99864),
        (1.0, "[psi]", "Pa", 6894.757293168),
        (10.0, "cm[H2O]", "kPa", 0.980665),
        (72.0, "/min", "/h", 4320.0),
        (72.0, "/min", "/s", 1.2),
        (50.0, "%", "1", 0.5),
        (0.97, "1", "%", 97.0),
        (1.0, "mL/s/{1.73_m2}", "mL/min/{1.73_m2}", 60.0),
        (1.0, "L/min", "mL/h", 60_000.0),
        (90.0, "min", "h", 1.5),
        (2.0, "wk", "d", 14.0),
        (1.0, "mo", "d", 30.4375),
        (1.0, "a", "d", 365.25),
        (1.0, "L", "dL", 10.0),
        (1.0, "dL", "mL", 100.0),
        (90.0, "fL", "uL", 9e-8),
        (2.5, "u[IU]/mL", "m[IU]/L", 2.5),
        (1.0, "U/mL", "U/L", 1000.0),
    ],
)
def test_units_of_one_dimension_convert_to_the_reference_value(
    value: float, from_unit: str, to_unit: str, expected: float
) -> None:
    assert convert(value, from_unit, to_unit) == pytest.approx(expected, rel=REL)


def test_converting_to_the_same_unit_returns_the_value_unchanged() -> None:
    assert convert(37, "Cel", "°C") == 37.0
    assert convert(3, "mmol/L", "mmol/L") == 3.0


def test_synonyms_convert_like_their_canonical_codes() -> None:
    assert convert(98.6, "°F", "C") == pytest.approx(37.0, rel=REL)
    assert convert(154, "lbs", "kg") == pytest.approx(69.85322498, rel=REL)
    assert convert(7.5, "K/uL", "x10^9/L") == pytest.approx(7.5, rel=REL)
    assert convert(1.0, "mg/dl", "µmol/L", molar_mass=113.12) == pytest.approx(88.4017, rel=1e-5)


# --- equivalents and valence -----------------------------------------------------------------


def test_equivalents_and_moles_do_not_convert_without_a_valence() -> None:
    assert convert(140.0, "mEq/L", "mmol/L") is None
    assert convert(140.0, "mmol/L", "mEq/L") is None


def test_equivalents_equal_moles_for_a_monovalent_ion() -> None:
    assert convert(140.0, "mEq/L", "mmol/L", valence=1) == pytest.approx(140.0, rel=REL)


def test_a_divalent_ion_has_twice_as_many_equivalents_as_moles() -> None:
    assert convert(5.0, "mEq/L", "mmol/L", valence=2) == pytest.approx(2.5, rel=REL)
    assert convert(2.5, "mmol/L", "mEq/L", valence=2) == pytest.approx(5.0, rel=REL)


def test_the_sign_of_the_valence_is_ignored() -> None:
    assert convert(103.0, "mEq/L", "mmol/L", valence=-1) == pytest.approx(103.0, rel=REL)


def test_mass_concentration_converts_to_equivalents_with_molar_mass_and_valence() -> None:
    calcium = convert(10.0, "mg/dL", "mEq/L", molar_mass=40.078, valence=2)
    assert calcium == pytest.approx(4.990269, rel=1e-6)
    assert convert(10.0, "mg/dL", "mEq/L", molar_mass=40.078) is None
    assert convert(10.0, "mg/dL", "mEq/L", valence=2) is None


@pytest.mark.parametrize("valence", [0, None])
def test_a_missing_or_zero_valence_is_refused(valence: int | None) -> None:
    assert convert(5.0, "mEq/L", "mmol/L", valence=valence) is None


# --- refusals --------------------------------------------------------------------------------


def test_mass_and_substance_concentrations_do_not_convert_without_a_molar_mass() -> None:
    assert convert(1.0, "mg/dL", "umol/L") is None
    assert convert(88.4, "umol/L", "mg/dL") is None


@pytest.mark.parametrize("molar_mass", [0.0, -113.12, math.nan, math.inf])
def test_an_impossible_molar_mass_is_refused(molar_mass: float) -> None:
    assert convert(1.0, "mg/dL", "umol/L", molar_mass=molar_mass) is None


@pytest.mark.parametrize(
    ("from_unit", "to_unit"),
    [
        ("mg/dL", "kg"),
        ("mL/min", "mL/min/{1.73_m2}"),
        ("mL/min/{1.73_m2}", "mL/min"),
        ("mL/min/1.73m2", "mL/min"),
        ("[IU]/L", "U/L"),
        ("m[IU]/L", "mU/L"),
        ("/min", "min"),
        ("10*9/L", "g/L"),
        ("kg/m2", "kg"),
        ("%", "mg/dL"),
        ("Cel", "kPa"),
    ],
)
def test_units_of_different_dimensions_do_not_convert(from_unit: str, to_unit: str) -> None:
    assert convert(1.0, from_unit, to_unit, molar_mass=100.0, valence=1) is None


@pytest.mark.parametrize(
    "unit", [None, "", "   ", "furlongs", "{score}", "(score)", "mg/g", "mmol/mol", "pH", "fl oz"]
)
def test_unknown_units_are_not_converted(unit: str | None) -> None:
    assert normalise_unit(unit) is None
    assert not is_known_unit(unit)
    assert unit_dimension(unit) is None
    assert convert(1.0, unit, "g/L") is None
    assert convert(1.0, "g/L", unit) is None  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_values_are_not_converted(value: float) -> None:
    assert convert(value, "mg/dL", "g/L") is None
    assert convert(value, "mg/dL", "mg/dL") is None


def test_a_conversion_that_overflows_gives_none() -> None:
    assert convert(1e300, "10*12/L", "/L") is None


# --- normalisation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "code"),
    [
        ("mg/dl", "mg/dL"),
        ("MG/DL", "mg/dL"),
        ("mg%", "mg/dL"),
        ("g/dl", "g/dL"),
        ("g/l", "g/L"),
        ("ug/ml", "ug/mL"),
        ("mcg/mL", "ug/mL"),
        ("µg/L", "ug/L"),
        ("umol/L", "umol/L"),
        ("µmol/L", "umol/L"),  # micro sign U+00B5
        ("μmol/L", "umol/L"),  # Greek mu U+03BC
        ("mcmol/L", "umol/L"),
        ("mmol/l", "mmol/L"),
        ("MMOL/L", "mmol/L"),
        ("mEq/L", "meq/L"),
        ("mEq/l", "meq/L"),
        ("10^3/uL", "10*3/uL"),
        ("K/uL", "10*3/uL"),
        ("K/ul", "10*3/uL"),
        ("x10E3/uL", "10*3/uL"),
        ("10*3/uL", "10*3/uL"),
        ("thou/uL", "10*3/uL"),
        ("x10^3/mm3", "10*3/uL"),
        ("10³/µL", "10*3/uL"),
        ("M/uL", "10*6/uL"),
        ("x10*9/L", "10*9/L"),
        ("×10⁹/L", "10*9/L"),
        ("10^12/L", "10*12/L"),
        ("/mm3", "/mm3"),
        ("cells/uL", "/uL"),
        ("degF", "[degF]"),
        ("°F", "[degF]"),
        ("[degF]", "[degF]"),
        ("C", "Cel"),
        ("°C", "Cel"),
        ("Cel", "Cel"),
        ("CEL", "Cel"),
        ("degrees C", "Cel"),
        ("lb", "[lb_av]"),
        ("lbs", "[lb_av]"),
        ("[lb_av]", "[lb_av]"),
        ("oz", "[oz_av]"),
        ("in", "[in_i]"),
        ("[in_i]", "[in_i]"),
        ("ft", "[ft_i]"),
        ("mmHg", "mm[Hg]"),
        ("mm Hg", "mm[Hg]"),
        ("mm[Hg]", "mm[Hg]"),
        ("KPA", "kPa"),
        ("cmH2O", "cm[H2O]"),
        ("bpm", "/min"),
        ("/min", "/min"),
        ("{beats}/min", "/min"),
        ("{breaths}/min", "/min"),
        ("beats/minute", "/min"),
        ("%", "%"),
        ("kg/m2", "kg/m2"),
        ("kg/m²", "kg/m2"),
        ("mL/min/1.73m2", "mL/min/{1.73_m2}"),
        ("mL/min/{1.73_m2}", "mL/min/{1.73_m2}"),
        ("ml/min/1.73 m²", "mL/min/{1.73_m2}"),
        ("mL/min", "mL/min"),
        ("ml/hr", "mL/h"),
        ("IU/L", "[IU]/L"),
        ("µIU/mL", "u[IU]/mL"),
        ("mIU/L", "m[IU]/L"),
        ("ml", "mL"),
        ("ML", "mL"),
        ("KG", "kg"),
        ("days", "d"),
        ("yrs", "a"),
        ("hrs", "h"),
        ("minutes", "min"),
        (" mg/dL ", "mg/dL"),
    ],
)
def test_units_as_ehrs_write_them_normalise_to_the_ucum_code(written: str, code: str) -> None:
    assert normalise_unit(written) == code
    assert is_known_unit(written)


@pytest.mark.parametrize("unit", ALL_UNITS)
def test_every_canonical_code_normalises_to_itself(unit: str) -> None:
    assert normalise_unit(unit) == unit


@pytest.mark.parametrize(
    ("written", "why"),
    [
        ("PA", "peta-ampere, not pascal"),
        ("Mg", "megagram or magnesium, not milligram"),
        ("MM", "megametre, not millimetre"),
        ("G", "gauss, not gram"),
        ("k", "a prefix, not kelvin"),
        ("G/L", "giga per litre (cell counts) or a shouted g/L"),
        ("M", "molar, metre or month"),
    ],
)
def test_case_variants_that_name_another_unit_are_refused(written: str, why: str) -> None:
    assert normalise_unit(written) is None, why


# --- dimensions and properties ---------------------------------------------------------------


def test_the_groups_above_are_exactly_the_modules_dimensions() -> None:
    dimensions = {name: {unit_dimension(unit) for unit in units} for name, units in GROUPS.items()}
    assert all(len(found) == 1 and None not in found for found in dimensions.values())
    assert len({found.pop() for found in dimensions.values()}) == len(GROUPS)


finite = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False, allow_infinity=False)


@st.composite
def compatible_pair(draw: st.DrawFn) -> tuple[str, str]:
    units = GROUPS[draw(st.sampled_from(sorted(GROUPS)))]
    return draw(st.sampled_from(units)), draw(st.sampled_from(units))


@st.composite
def incompatible_pair(draw: st.DrawFn) -> tuple[str, str]:
    first, second = draw(
        st.lists(st.sampled_from(sorted(GROUPS)), min_size=2, max_size=2, unique=True)
    )
    return draw(st.sampled_from(GROUPS[first])), draw(st.sampled_from(GROUPS[second]))


@given(value=finite, pair=compatible_pair())
def test_converting_there_and_back_returns_the_value(value: float, pair: tuple[str, str]) -> None:
    there = convert(value, *pair)
    assert there is not None
    assert convert(there, pair[1], pair[0]) == pytest.approx(value, rel=REL, abs=1e-9)


@given(
    value=finite,
    molar_mass=st.floats(min_value=1.0, max_value=1e6),
    valence=st.integers(min_value=1, max_value=4),
    first=st.sampled_from([unit for name in CHEMICAL for unit in GROUPS[name]]),
    second=st.sampled_from([unit for name in CHEMICAL for unit in GROUPS[name]]),
)
def test_chemical_concentrations_round_trip_given_molar_mass_and_valence(
    value: float, molar_mass: float, valence: int, first: str, second: str
) -> None:
    there = convert(value, first, second, molar_mass=molar_mass, valence=valence)
    assert there is not None
    back = convert(there, second, first, molar_mass=molar_mass, valence=valence)
    assert back == pytest.approx(value, rel=REL, abs=1e-12)


@given(value=finite, pair=incompatible_pair())
def test_units_of_different_dimensions_never_convert(value: float, pair: tuple[str, str]) -> None:
    assert convert(value, *pair) is None
    chemical = unit_dimension(pair[0]) in CHEMICAL and unit_dimension(pair[1]) in CHEMICAL
    if not chemical:
        assert convert(value, *pair, molar_mass=100.0, valence=2) is None


# --- the shared FHIR samples -----------------------------------------------------------------


@pytest.fixture(scope="module")
def synthea_quantities() -> list[tuple[str, dict[str, Any]]]:
    """(LOINC code, valueQuantity) of every Synthea Observation; skips without the samples."""
    root = os.environ.get("BEDSIDE_FHIR_SAMPLES")
    folder = Path(root, "synthea") if root else None
    if folder is None or not folder.is_dir():
        pytest.skip("BEDSIDE_FHIR_SAMPLES with a synthea/ folder is not available")
    found = []
    for path in sorted(folder.glob("*.json")):
        for entry in json.loads(path.read_text(encoding="utf-8")).get("entry", []):
            resource = entry.get("resource", {})
            quantity = resource.get("valueQuantity")
            if resource.get("resourceType") == "Observation" and quantity:
                found.append((resource["code"]["coding"][0]["code"], quantity))
    return found


def test_synthea_egfr_units_are_two_distinct_dimensions(
    synthea_quantities: list[tuple[str, dict[str, Any]]],
) -> None:
    units = {q["code"] for code, q in synthea_quantities if code == "33914-3"}
    assert units == {"mL/min/{1.73_m2}", "mL/min"}
    assert unit_dimension("mL/min/{1.73_m2}") != unit_dimension("mL/min")


def test_synthea_measurement_units_are_all_known(
    synthea_quantities: list[tuple[str, dict[str, Any]]],
) -> None:
    not_measurements = {"{score}", "(score)", "{nominal}", "pH", "mg/g"}  # scores, codes, ratios
    codes = {q["code"] for _, q in synthea_quantities if "code" in q}
    assert {code for code in codes if not is_known_unit(code)} <= not_measurements
