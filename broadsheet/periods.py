"""Digest periods: which numbered issue a day belongs to, and which days an issue covers.

The number is the distance from `issues.epoch` in whole periods, so it depends only on the
date and the settings, never on which other stories exist.
"""

from __future__ import annotations

from datetime import date, timedelta

from .config import IssueSettings


def period_index(day: date, settings: IssueSettings) -> int:
    """How many periods after the epoch's period `day` falls (negative: before the epoch)."""
    epoch = settings.epoch
    if settings.period == "daily":
        return (day - epoch).days
    if settings.period == "monthly":
        return (day.year - epoch.year) * 12 + day.month - epoch.month
    epoch_monday = epoch - timedelta(days=epoch.weekday())
    return (day - epoch_monday).days // 7


def issue_number(day: date, settings: IssueSettings) -> int:
    return period_index(day, settings) + 1


def issue_bounds(number: int, settings: IssueSettings) -> tuple[date, date]:
    """First and last day (inclusive) of issue `number`'s period."""
    index = number - 1
    epoch = settings.epoch
    if settings.period == "daily":
        start = epoch + timedelta(days=index)
        return start, start
    if settings.period == "monthly":
        months = epoch.year * 12 + epoch.month - 1 + index
        start = date(months // 12, months % 12 + 1, 1)
        following = date((months + 1) // 12, (months + 1) % 12 + 1, 1)
        return start, following - timedelta(days=1)
    start = epoch - timedelta(days=epoch.weekday()) + timedelta(weeks=index)
    return start, start + timedelta(days=6)
