"""The timeline: capture times grouped into years, months, days and recent periods.

:func:`build_timeline` groups capture times; :func:`bucket_range` and :func:`parse_date` turn
the keys of those groups (or a date typed on the command line) back into date ranges.

Every range this module returns is naive and half-open, ``start <= t < end``, and is meant to be
compared with :func:`core.capture_time.wall_time` of a capture time (see the time rule there).
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Literal

from core.capture_time import wall_time
from core.errors import BadDateError

BucketKind = Literal["year", "month", "day", "relative"]

RELATIVE_KEYS: tuple[str, ...] = ("last-7-days", "last-30-days", "last-12-months", "all")
"""Keys of the recent-period buckets, in the order :func:`build_timeline` lists them."""

_RELATIVE_LABELS = {
    "last-7-days": "Last 7 days",
    "last-30-days": "Last 30 days",
    "last-12-months": "Last 12 months",
    "all": "All photos",
}
_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_PERIOD = re.compile(r"(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?", re.ASCII)
_DATE_HELP = (
    "expected YYYY, YYYY-MM, YYYY-MM-DD, today, yesterday, a timeline key such as last-7-days, "
    "or a time ago such as 7d, 2w, 3m or 1y"
)
_AGO = re.compile(r"(\d{1,5})\s*([dwmy])", re.ASCII | re.IGNORECASE)


@dataclass(slots=True)
class Bucket:
    """A group of photos in the timeline.

    Attributes
    ----------
    key
        ``"2019"``, ``"2019-05"``, ``"2019-05-14"``, or one of :data:`RELATIVE_KEYS`.
    label
        Text to show: ``"2019"``, ``"May 2019"``, ``"Tue 14 May 2019"``, ``"Last 7 days"``.
    kind
        ``"year"``, ``"month"``, ``"day"`` or ``"relative"``.
    start, end
        Naive wall-clock range, half-open; the same as :func:`bucket_range` of ``key``.
    count
        Photos in the range.
    indexed
        Of those, how many are indexed.
    children
        Months of a year, days of a month, newest first; empty for days and relative buckets.
    """

    key: str
    label: str
    kind: BucketKind
    start: datetime
    end: datetime
    count: int = 0
    indexed: int = 0
    children: list[Bucket] = field(default_factory=list)


@dataclass(slots=True)
class Timeline:
    """Photos grouped by time.

    Attributes
    ----------
    relative
        One bucket per :data:`RELATIVE_KEYS` entry, in that order, always present.
    years
        Years that hold photos, newest first, each with its months and their days.
    """

    relative: list[Bucket]
    years: list[Bucket]

    def find(self, key: str) -> Bucket | None:
        """Return the bucket with this key, or None when no photo falls in it."""
        candidates = [*self.relative, *self.years]
        while candidates:
            bucket = candidates.pop()
            if bucket.key == key:
                return bucket
            if key.startswith(bucket.key):
                candidates.extend(bucket.children)
        return None


def _today(now: datetime | None) -> date:
    return wall_time(now).date() if now is not None else datetime.now().date()


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day)


def _month_start(index: int) -> datetime:
    """Return the first moment of month ``index`` (``year * 12 + month - 1``)."""
    year, month = divmod(index, 12)
    return datetime(year, month + 1, 1) if year <= 9999 else datetime.max


def _relative_range(key: str, today: date) -> tuple[datetime, datetime]:
    tomorrow = _midnight(today) + timedelta(days=1)
    if key == "last-7-days":
        return tomorrow - timedelta(days=7), tomorrow
    if key == "last-30-days":
        return tomorrow - timedelta(days=30), tomorrow
    if key == "last-12-months":
        return _month_start(today.year * 12 + today.month - 1 - 11), tomorrow
    return datetime.min, datetime.max


def _period_range(year: int, month: int | None, day: int | None) -> tuple[datetime, datetime]:
    """Return the range of a year, month or day; raises ValueError for impossible dates."""
    if month is None:
        start = datetime(year, 1, 1)
        return start, _month_start((year + 1) * 12)
    if day is None:
        start = datetime(year, month, 1)
        return start, _month_start(year * 12 + month)
    start = datetime(year, month, day)
    return start, (start + timedelta(days=1) if start.date() < date.max else datetime.max)


def _parse_period(text: str) -> tuple[datetime, datetime] | None:
    """Return the range named by ``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD``, None if not that form.

    Raises ValueError when the form is right but the date impossible (``2019-13``).
    """
    match = _PERIOD.fullmatch(text)
    if match is None:
        return None
    year, month, day = match.groups()
    return _period_range(int(year), int(month) if month else None, int(day) if day else None)


def bucket_range(key: str, now: datetime | None = None) -> tuple[datetime, datetime]:
    """Turn a timeline key back into its naive half-open range ``(start, end)``.

    Parameters
    ----------
    key
        ``YYYY``, ``YYYY-MM``, ``YYYY-MM-DD`` or one of :data:`RELATIVE_KEYS`.
    now
        Reference time for the relative keys (default: now). ``last-7-days`` is today and the six
        days before it, ``last-30-days`` likewise; ``last-12-months`` is this month so far and the
        eleven before it. All three end at the end of today. ``all`` is unbounded
        (``datetime.min`` to ``datetime.max``).

    Raises
    ------
    BadDateError
        The key is none of these.
    """
    if key in _RELATIVE_LABELS:
        return _relative_range(key, _today(now))
    try:
        found = _parse_period(key)
    except ValueError:
        found = None
    if found is None:
        raise BadDateError(
            f'bad timeline key "{key}": {_DATE_HELP}, or one of {", ".join(RELATIVE_KEYS)}'
        )
    return found


def parse_date(text: str, *, end: bool = False, now: datetime | None = None) -> datetime:
    """Parse a date typed on the command line (``--since``, ``--until``).

    Parameters
    ----------
    text
        ``YYYY``, ``YYYY-MM``, ``YYYY-MM-DD``, or an ISO 8601 date and time such as
        ``2019-05-14T09:30`` (an offset in it is kept; compare through
        :func:`~core.capture_time.wall_time`). Also every key ``timeline`` prints
        (:data:`RELATIVE_KEYS`: ``last-7-days`` ...), ``today`` and ``yesterday`` (periods, like
        a day), and a time ago: ``7d``, ``2w``, ``3m``, ``1y`` (days, weeks, months, years):
        midnight that many days, weeks, months or years before today; ``7d`` starts where
        ``last-7-days`` does.
    end
        Return the end of the period named instead of its start: ``2019-05`` gives
        ``2019-06-01 00:00``, the exclusive end that makes ``--until 2019-05`` include May. A
        full date and time, or a time ago, is returned as it is.
    now
        Reference time of the relative forms (default: now).

    Raises
    ------
    BadDateError
        ``bad date "2019-13": expected YYYY, YYYY-MM or YYYY-MM-DD``.
    """
    cleaned = text.strip()
    relative = _relative_period(cleaned.lower(), _today(now))
    if relative is not None:
        return relative[1] if end else relative[0]
    try:
        period = _parse_period(cleaned)
    except ValueError:  # the form is right, the date is not: 2019-13, 2019-02-30
        raise BadDateError(
            f'bad date "{text}": no such date (a month is 01 to 12, a day exists in its month)'
        ) from None
    if period is not None:
        return period[1] if end else period[0]
    try:
        return datetime.fromisoformat(cleaned)
    except ValueError:
        pass
    raise BadDateError(f'bad date "{text}": {_DATE_HELP}')


def _relative_period(text: str, today: date) -> tuple[datetime, datetime] | None:
    """The range of ``today``, ``yesterday``, a timeline key or a time ago; None otherwise."""
    if text in RELATIVE_KEYS:
        return _relative_range(text, today)
    if text in ("today", "yesterday"):
        day = _midnight(today) - timedelta(days=1 if text == "yesterday" else 0)
        return day, day + timedelta(days=1)
    ago = _AGO.fullmatch(text)
    if ago is None:
        return None
    count, unit = int(ago.group(1)), ago.group(2).lower()
    tomorrow = _midnight(today) + timedelta(days=1)
    if unit in "dw":
        moment = tomorrow - timedelta(days=count * (7 if unit == "w" else 1))
    else:
        months = count * (12 if unit == "y" else 1)
        index = today.year * 12 + today.month - 1 - months
        if index < 12:  # before year 1
            return datetime.min, datetime.min
        year, month = divmod(index, 12)
        month += 1
        last_day = calendar.monthrange(year, month)[1]
        moment = datetime(year, month, min(today.day, last_day)) + timedelta(days=1)
    return moment, moment


def build_timeline(items: Iterable[tuple[datetime, bool]], now: datetime | None = None) -> Timeline:
    """Group capture times into years, months and days, and recent periods.

    Parameters
    ----------
    items
        ``(taken_at, indexed)`` per photo; aware and naive times may be mixed (see
        :func:`wall_time`).
    now
        Reference time for the relative buckets (default: now).

    Returns
    -------
    Timeline
        Counts add up: the years sum to the ``all`` bucket, months to their year, days to their
        month.
    """
    per_day: dict[date, list[int]] = {}
    for taken_at, indexed in items:
        cell = per_day.setdefault(wall_time(taken_at).date(), [0, 0])
        cell[0] += 1
        cell[1] += bool(indexed)

    today = _today(now)
    relative = []
    for key in RELATIVE_KEYS:
        start, stop = _relative_range(key, today)
        bucket = Bucket(key, _RELATIVE_LABELS[key], "relative", start, stop)
        for day, (count, done) in per_day.items():
            if start <= _midnight(day) < stop:
                bucket.count += count
                bucket.indexed += done
        relative.append(bucket)

    years: dict[int, Bucket] = {}
    months: dict[tuple[int, int], Bucket] = {}
    for day in sorted(per_day, reverse=True):
        count, done = per_day[day]
        year = years.get(day.year)
        if year is None:
            name = f"{day.year:04d}"
            year = Bucket(name, name, "year", *_period_range(day.year, None, None))
            years[day.year] = year
        month = months.get((day.year, day.month))
        if month is None:
            key = f"{day.year:04d}-{day.month:02d}"
            label = f"{_MONTHS[day.month - 1]} {day.year:04d}"
            month = Bucket(key, label, "month", *_period_range(day.year, day.month, None))
            months[(day.year, day.month)] = month
            year.children.append(month)
        label = f"{_WEEKDAYS[day.weekday()]} {day.day} {_MONTHS[day.month - 1]} {day.year:04d}"
        start, stop = _period_range(day.year, day.month, day.day)
        month.children.append(Bucket(day.isoformat(), label, "day", start, stop, count, done))
        for bucket in (year, month):
            bucket.count += count
            bucket.indexed += done
    return Timeline(relative, list(years.values()))
