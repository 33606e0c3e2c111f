"""The human–computer agreement report from aggregated cells (what SQL GROUP BYs return): cards
shown, responses and override reasons, agreement of the model's high-risk flag with the
clinician's action, time to response, and appropriate reliance where outcomes are known.

A clinician who accepts a card agrees with it: for a high-risk card they judge the patient high
risk, for any other card not; overriding means the opposite judgement.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fairness import columns as C
from fairness.counts import GroupKey
from fairness.report import ReportThresholds
from fairness.stats import cohen_kappa, histogram_quantile, wilson
from fairness.suppression import complement, hide, hides, protect, shown

RESPONSES = (None, "accepted", "overridden")  # index 0: no response
NONE, ACCEPT, OVERRIDE = range(3)
Reason = tuple[str | None, str | None, str | None]  # override (system, code, display)
Row = dict[str, Any]
DEFAULT_THRESHOLDS = ReportThresholds()
RELIANCE = (  # (column prefix, high-risk flag, response) of the outcome cells reported
    (C.OVERRIDDEN_HIGH, 1, OVERRIDE),
    (C.ACCEPTED_HIGH, 1, ACCEPT),
    (C.ACCEPTED_OTHER, 0, ACCEPT),
)

Cell = tuple[GroupKey, bool, str | None, int | None, int, int]
"""(group key, high-risk flag, latest response or None, event or None, cards, comments)."""
DelayCell = tuple[GroupKey, int, int]
"""(group key, whole hours from card to first response, responses)."""
ReasonCell = tuple[GroupKey, str | None, str | None, str | None, int]
"""(group key, override system, code, display, overrides)."""


def _table() -> np.ndarray:
    return np.zeros((2, 3), dtype=np.int64)


@dataclass(eq=False)
class AgreementCounts:
    """Counts for one group; ``cards``, ``labelled`` and ``events`` are [flag][response]."""

    key: GroupKey
    cards: np.ndarray = field(default_factory=_table)
    labelled: np.ndarray = field(default_factory=_table)
    events: np.ndarray = field(default_factory=_table)
    comments: int = 0
    delays: dict[int, int] = field(default_factory=dict)
    reasons: dict[Reason, int] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.cards.sum())

    def shown(self, response: int) -> int:
        return int(self.cards[:, response].sum())

    @property
    def responded(self) -> int:
        return self.shown(ACCEPT) + self.shown(OVERRIDE)

    def add_cell(
        self, flag: bool, response: str | None, event: int | None, count: int, comments: int
    ) -> None:
        index = (int(flag), RESPONSES.index(response))
        self.cards[index] += count
        self.comments += comments
        if event is not None:
            self.labelled[index] += count
            self.events[index] += count * int(event)

    def merge(self, other: AgreementCounts) -> None:
        self.cards = self.cards + other.cards
        self.labelled = self.labelled + other.labelled
        self.events = self.events + other.events
        self.comments += other.comments
        for bucket, count in other.delays.items():
            self.delays[bucket] = self.delays.get(bucket, 0) + count
        for reason, count in other.reasons.items():
            self.reasons[reason] = self.reasons.get(reason, 0) + count

    def agreement_table(self) -> np.ndarray:
        """Model (high, not) × clinician's judgement (high, not), among responded cards."""
        flagged, other = self.cards[1], self.cards[0]
        return np.array([[flagged[ACCEPT], flagged[OVERRIDE]], [other[OVERRIDE], other[ACCEPT]]])


def from_cells(
    cells: Iterable[Cell],
    delays: Iterable[DelayCell] = (),
    reasons: Iterable[ReasonCell] = (),
) -> list[AgreementCounts]:
    """Group counts from the three kinds of cells, largest group first."""
    groups: dict[GroupKey, AgreementCounts] = {}
    for key, flag, response, event, count, comments in cells:
        groups.setdefault(key, AgreementCounts(key)).add_cell(
            flag, response, event, count, comments
        )
    for key, hours, count in delays:
        group = groups.setdefault(key, AgreementCounts(key))
        group.delays[hours] = group.delays.get(hours, 0) + count
    for key, system, code, display, count in reasons:
        groups.setdefault(key, AgreementCounts(key)).reasons[(system, code, display)] = count
    return sorted(groups.values(), key=lambda group: (-group.n, group.key))


def overall(groups: Iterable[AgreementCounts], width: int) -> AgreementCounts:
    """The whole population, keyed ``("all",) * width``."""
    total = AgreementCounts(("all",) * width)
    for group in groups:
        total.merge(group)
    return total


def agreement_measures(table: np.ndarray) -> dict[str, float | None]:
    """Raw, positive and negative agreement and Cohen's kappa (with its standard error and 95%
    interval) of a 2×2 table [[both high, model only], [clinician only, neither]]."""
    (a, b), (c, d) = np.asarray(table, dtype=int).tolist()
    n = a + b + c + d
    kappa = cohen_kappa(table) or {}
    return {
        C.RAW_AGREEMENT: (a + d) / n if n else None,
        C.POSITIVE_AGREEMENT: 2 * a / (2 * a + b + c) if a + b + c else None,
        C.NEGATIVE_AGREEMENT: 2 * d / (2 * d + b + c) if d + b + c else None,
        C.KAPPA: kappa.get("value"),
        C.KAPPA + C.SE: kappa.get("se"),
        C.KAPPA + C.LOW: kappa.get("low"),
        C.KAPPA + C.HIGH: kappa.get("high"),
    }


def agreement_report(
    groups: Sequence[AgreementCounts],
    attributes: Sequence[str],
    weeks: Sequence[AgreementCounts],
    thresholds: ReportThresholds = DEFAULT_THRESHOLDS,
) -> dict[str, Any]:
    """Rows for the groups and overall, the override reasons and the weekly override trend.

    Small cells are suppressed so that no count from 1 to ``min_cell`` − 1 is shown or follows
    from other numbers: a rate × its denominator, a row's cards − its other counts, the overall
    row − the shown groups (or weeks), or the overall reason counts − the groups'."""
    small = thresholds.min_cell
    total = overall(groups, len(attributes))
    rows = [_row(group, attributes, thresholds) for group in groups]
    whole = _row(total, attributes, thresholds)
    _settle([*rows, whole], [*groups, total], rows, groups, whole, small)
    weeks = sorted(weeks, key=lambda w: w.key)
    trend = [_trend_row(week, small) for week in weeks]
    _settle(trend, weeks, trend, weeks, whole, small, trend_columns()[1:])
    return {
        "thresholds": thresholds.as_dict(),
        "overall": whole,
        "groups": rows,
        "reasons": _reason_rows([*groups, total], [*rows, whole], attributes, small),
        "trend": trend,
    }


def _blocks() -> list[tuple[Sequence[Callable[[Any], int]], Sequence[str]]]:
    """The counts of a row (as ``protect`` wants them) whose overall is published."""
    blocks: list[tuple[Sequence[Callable[[Any], int]], Sequence[str]]] = [
        ([lambda g: g.n], [C.CARDS]),
        ([lambda g: int(g.cards[1].sum())], [C.HIGH_RISK]),
        ([lambda g: g.shown(ACCEPT)], [C.ACCEPTED]),
        ([lambda g: g.shown(OVERRIDE)], [C.OVERRIDDEN]),
        ([lambda g: g.shown(NONE)], [C.NO_RESPONSE]),
        ([lambda g: g.comments], [C.COMMENTS]),
    ]
    for name, flag, response in RELIANCE:
        blocks.append(
            ([lambda g, f=flag, r=response: int(g.labelled[f, r])], [name + C.LABELLED_SUFFIX])
        )
        blocks.append(
            ([lambda g, f=flag, r=response: int(g.events[f, r])], [name + C.EVENTS_SUFFIX])
        )
    return blocks


def _settle(
    every: Sequence[Row],
    counts: Sequence[AgreementCounts],
    rows: Sequence[Row],
    groups: Sequence[AgreementCounts],
    total: Row,
    small: int,
    columns: Sequence[str] | None = None,
) -> None:
    """Suppress within each row of ``every`` and across ``rows`` (with ``total``) until stable."""
    columns = metric_columns() if columns is None else columns
    present = {name for row in every for name in row}
    blocks = [(values, names) for values, names in _blocks() if names[0] in present]
    before = None
    while before != every:
        before = [dict(row) for row in every]
        for row, group in zip(every, counts, strict=True):
            _within(row, group, small)
        protect(rows, groups, total, blocks, small, columns)


def _within(row: Row, group: AgreementCounts, small: int) -> None:
    """Within a row: cards − the other response counts, and the rates (× their denominators),
    must not give a hidden count."""
    if not shown(row.get(C.CARDS)):
        return
    names = (C.ACCEPTED, C.OVERRIDDEN, C.NO_RESPONSE)
    values = [group.shown(ACCEPT), group.shown(OVERRIDE), group.shown(NONE)]
    # a count not in the row (the trend's no-response) is hidden only when small
    hidden = {
        i
        for i, name in enumerate(names)
        if (name in row and not shown(row[name])) or (name not in row and 0 < values[i] < small)
    }
    for i in complement(values, hidden, small) - hidden:
        hide(row, [names[i]])
        hidden.add(i)
    if 2 in hidden and C.RESPONSE_RATE in row:
        hide(row, [C.RESPONSE_RATE])
    if hidden & {0, 1}:
        hide(row, [C.OVERRIDE_RATE])
    if C.RAW_AGREEMENT in row and (not shown(row[C.OVERRIDE_RATE]) or not shown(row[C.HIGH_RISK])):
        hide(row, list(agreement_measures(np.zeros((2, 2)))))
    for name, _, _ in RELIANCE:
        labelled, events = name + C.LABELLED_SUFFIX, name + C.EVENTS_SUFFIX
        if labelled in row and not (shown(row[labelled]) and shown(row[events])):
            hide(row, [name + C.EVENT_RATE_SUFFIX])


def _row(group: AgreementCounts, attributes: Sequence[str], thresholds: ReportThresholds) -> Row:
    row: Row = dict(zip(attributes, group.key, strict=True))
    small = thresholds.min_cell
    if group.n < small:
        return row | dict.fromkeys(metric_columns(), C.SUPPRESSED)
    count = _counter(small)
    high = int(group.cards[1].sum())
    row |= {
        C.CARDS: group.n,
        C.HIGH_RISK: C.SUPPRESSED if hides(high, group.n, small) else high,
        C.ACCEPTED: count(group.shown(ACCEPT)),
        C.OVERRIDDEN: count(group.shown(OVERRIDE)),
        C.NO_RESPONSE: count(group.shown(NONE)),
        C.COMMENTS: count(group.comments),
    }
    _rate(row, C.RESPONSE_RATE, group.responded, group.n, small)
    _rate(row, C.OVERRIDE_RATE, group.shown(OVERRIDE), group.responded, small)
    measures = agreement_measures(group.agreement_table())
    # the measures give back the table's cells (and with the labelled counts, the unlabelled)
    unlabelled = group.cards - group.labelled
    few = group.responded < small or bool(
        ((group.cards > 0) & (group.cards < small)).any()
        or ((unlabelled > 0) & (unlabelled < small)).any()
    )
    hidden = few or hides(group.shown(OVERRIDE), group.responded, small)
    row |= {name: C.SUPPRESSED if hidden else value for name, value in measures.items()}
    # A quantile of the answer delays gives back no count: it needs enough answers, nothing more.
    too_few_delays = sum(group.delays.values()) < small
    for name, q in ((C.HOURS_MEDIAN, 0.5), (C.HOURS_P90, 0.9)):
        row[name] = C.SUPPRESSED if too_few_delays else histogram_quantile(group.delays, q)
    for name, flag, response in RELIANCE:
        labelled = int(group.labelled[flag, response])
        events = int(group.events[flag, response])
        row[name + C.LABELLED_SUFFIX] = count(labelled)
        row[name + C.EVENTS_SUFFIX] = C.SUPPRESSED if hides(events, labelled, small) else events
        _rate(row, name + C.EVENT_RATE_SUFFIX, events, labelled, small)
    return row


def _reason_rows(
    counts: Sequence[AgreementCounts], rows: Sequence[Row], attributes: Sequence[str], small: int
) -> list[Row]:
    """The reason rows of the groups whose row is shown, then overall (the last of ``counts``),
    suppressed so that neither a group's overridden − its other reason counts nor the overall
    reason count − the groups' gives a hidden count."""
    codes = sorted({reason for group in counts for reason in group.reasons}, key=str)
    visible = [shown(row.get(C.CARDS)) for row in rows]
    hidden = [
        {r for r in codes if not visible[i] or 0 < group.reasons.get(r, 0) < small}
        for i, group in enumerate(counts)
    ]
    changed = True
    while changed:
        changed = False
        for i, group in enumerate(counts):  # within a group: the overridden total
            if not visible[i] or not shown(rows[i].get(C.OVERRIDDEN)):
                continue
            values = [group.reasons.get(r, 0) for r in codes]
            values.append(group.shown(OVERRIDE) - sum(values))  # overrides without a reason
            gone = {j for j, r in enumerate(codes) if r in hidden[i]}
            if 0 < values[-1] < small:
                gone.add(len(codes))
            for j in complement(values, gone, small) - gone - {len(codes)}:
                hidden[i].add(codes[j])
                changed = True
        for reason in codes:  # across groups: the overall count
            if reason in hidden[-1]:
                continue
            values = [group.reasons.get(reason, 0) for group in counts[:-1]]
            gone = {i for i in range(len(values)) if reason in hidden[i]}
            for i in complement(values, gone, small) - gone:
                hidden[i].add(reason)
                changed = True
    found = []
    for i, group in enumerate(counts):
        if not visible[i]:
            continue  # a hidden group names no reasons
        key = dict(zip(attributes, group.key, strict=True))
        ordered = sorted(group.reasons.items(), key=lambda item: (-item[1], str(item[0])))
        found += [
            key
            | {"override_system": system, "override_code": code, "override_display": display}
            | {C.REASON_COUNT: C.SUPPRESSED if (system, code, display) in hidden[i] else number}
            for (system, code, display), number in ordered
        ]
    return found


def _trend_row(week: AgreementCounts, small: int) -> Row:
    row: Row = {"week": week.key[0]}
    if week.n < small:
        return row | dict.fromkeys(trend_columns()[1:], C.SUPPRESSED)
    count = _counter(small)
    row |= {
        C.CARDS: week.n,
        C.ACCEPTED: count(week.shown(ACCEPT)),
        C.OVERRIDDEN: count(week.shown(OVERRIDE)),
    }
    _rate(row, C.OVERRIDE_RATE, week.shown(OVERRIDE), week.responded, small)
    return row


def _counter(small: int) -> Callable[[int], int | str]:
    return lambda value: C.SUPPRESSED if 0 < value < small else value


def _rate(row: Row, name: str, numerator: int, denominator: int, small: int) -> None:
    found: list[Any] | None = wilson(numerator, denominator)
    if found is not None and hides(numerator, denominator, small):
        found = [C.SUPPRESSED] * 3
    row[name], row[name + C.LOW], row[name + C.HIGH] = found or (None, None, None)


def _interval_names(name: str) -> list[str]:
    return [name, name + C.LOW, name + C.HIGH]


def metric_columns() -> list[str]:
    """Every metric column of a group row, in order."""
    names = [C.CARDS, C.HIGH_RISK, C.ACCEPTED, C.OVERRIDDEN, C.NO_RESPONSE, C.COMMENTS]
    names += [*_interval_names(C.RESPONSE_RATE), *_interval_names(C.OVERRIDE_RATE)]
    names += list(agreement_measures(np.zeros((2, 2))))
    names += [C.HOURS_MEDIAN, C.HOURS_P90]
    for name, _, _ in RELIANCE:
        names += [name + C.LABELLED_SUFFIX, name + C.EVENTS_SUFFIX]
        names += _interval_names(name + C.EVENT_RATE_SUFFIX)
    return names


def reason_columns() -> list[str]:
    return ["override_system", "override_code", "override_display", C.REASON_COUNT]


def trend_columns() -> list[str]:
    return ["week", C.CARDS, C.ACCEPTED, C.OVERRIDDEN, *_interval_names(C.OVERRIDE_RATE)]
