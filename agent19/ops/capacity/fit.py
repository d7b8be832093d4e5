"""Fitting growth to observed sizes, projecting it, and the days until a disk fills.

Two fits, both least squares over the observed points (time in days, size in bytes or rows):

* ``linear`` — ``y = a + b·t``: the same amount added each month;
* ``compound_monthly`` — ``ln y = a + b·t``: the same *percentage* added each month.

Both are computed; the one with the smaller mean absolute error on the observed points is used, and the
other is reported with its error (``rejected``). Written here rather than pulled from numpy/scipy: two
closed-form regressions on at most a few hundred points.
"""

from __future__ import annotations

import math
from datetime import datetime

from agent19.ops.capacity.model import DAYS_PER_MONTH, Fit, FitMethod, Growth, Point, Projection

HORIZONS = (3, 6, 12)
MIN_POINTS = 3
"""Fewer observed points give no fit error (two points always lie on a line: "error 0.0 %")."""
MIN_SPAN_DAYS = 7.0
"""Observations closer together than a week read a bulk load, a vacuum or a day's peak as the trend."""


def too_little(points: list[Point]) -> str | None:
    """Why ``points`` cannot give a growth trend yet (None: enough history to fit)."""
    span = (parse_at(points[-1].at) - parse_at(points[0].at)).total_seconds() / 86400 if points else 0.0
    if len(points) >= MIN_POINTS and span >= MIN_SPAN_DAYS:
        return None
    shown = math.floor(span * 100) / 100  # never rounded up to the threshold it is short of (6.999 → 6.99)
    return (f"{len(points)} observed point(s) over {shown:.2f} days; a growth trend needs at least {MIN_POINTS} "
            f"points over at least {MIN_SPAN_DAYS:.0f} days")


def parse_at(at: str) -> datetime:
    return datetime.fromisoformat(at.replace("Z", "+00:00"))


def _regress(xs: list[float], ys: list[float]) -> tuple[float, float]:
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return my, 0.0
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    return my - b * mx, b


def _error_pct(ys: list[float], predicted: list[float]) -> float:
    mean = sum(ys) / len(ys)
    mae = sum(abs(y - p) for y, p in zip(ys, predicted, strict=True)) / len(ys)
    return round(100 * mae / mean, 3) if mean else 0.0


def fit_series(days: list[float], ys: list[float]) -> dict[FitMethod, tuple[float, float, float]]:
    """Each method's ``(a, b, error_pct)`` (compound only when every value is positive)."""
    out: dict[FitMethod, tuple[float, float, float]] = {}
    a, b = _regress(days, ys)
    out["linear"] = (a, b, _error_pct(ys, [a + b * x for x in days]))
    if all(y > 0 for y in ys):
        la, lb = _regress(days, [math.log(y) for y in ys])
        if lb * DAYS_PER_MONTH * max(HORIZONS) < 700:  # else its projections overflow a float: samples minutes apart
            out["compound_monthly"] = (la, lb, _error_pct(ys, [math.exp(la + lb * x) for x in days]))
    return out


def choose(points: list[Point], *, rows: bool = False) -> Fit:
    """The better fit of ``points`` (their bytes, or rows); the other's error is in ``rejected``."""
    t0 = parse_at(points[0].at)
    days = [(parse_at(p.at) - t0).total_seconds() / 86400 for p in points]
    ys = [float((p.rows or 0) if rows else p.bytes) for p in points]
    fits = fit_series(days, ys)
    method: FitMethod = min(fits, key=lambda m: (fits[m][2], m != "linear"))
    _, b, err = fits[method]
    now = ys[-1]
    if method == "linear":
        per_month = b * DAYS_PER_MONTH
        pct = 100 * per_month / now if now else 0.0
    else:
        pct = 100 * (math.exp(b * DAYS_PER_MONTH) - 1)
        per_month = now * pct / 100
    return Fit(method=method, unit="rows" if rows else "bytes", per_month=round(per_month, 1),
               monthly_growth_pct=round(pct, 3), error_pct=err, points=len(points), span_days=round(days[-1], 3),
               rejected={m: v[2] for m, v in fits.items() if m != method})


def added(method: FitMethod, now: float, per_month: float, pct: float, months: float) -> float:
    """What the fit adds to ``now`` in ``months``."""
    if method == "linear":
        return per_month * months
    return now * ((1 + pct / 100) ** months - 1)


def months_until(method: FitMethod, now: float, per_month: float, pct: float, extra: float) -> float | None:
    """Months until the fit has added ``extra`` (None: it never does at this rate)."""
    if extra <= 0:
        return 0.0
    if method == "linear":
        return extra / per_month if per_month > 0 else None
    if pct <= 0 or now <= 0:
        return None
    return math.log((now + extra) / now) / math.log(1 + pct / 100)


def project(growth: Growth, database_bytes: int, cluster_bytes: int, rows_now: int,
            disk_size: int | None) -> Growth:
    """Fill ``growth``'s projections (3, 6, 12 months) and the days until ``disk_size`` reaches 80 % and 100 %.

    The fit grows this database; the disk holds the whole cluster (other databases are taken as they are,
    WAL and server logs are not visible to SQL and not counted).
    """
    f, rows_fit = growth.fit, growth.rows_fit
    if f is None:
        return growth
    for months in HORIZONS:
        grown = added(f.method, database_bytes, f.per_month, f.monthly_growth_pct, months)
        rows = None
        if rows_fit is not None:
            rows = round(rows_now + added(rows_fit.method, rows_now, rows_fit.per_month,
                                          rows_fit.monthly_growth_pct, months))
        growth.projections.append(Projection(months=months, bytes=round(database_bytes + grown), rows=rows))
    growth.disk_size = disk_size
    if disk_size:
        for frac, field in ((0.8, "days_to_80_pct"), (1.0, "days_to_100_pct")):
            m = months_until(f.method, database_bytes, f.per_month, f.monthly_growth_pct,
                             frac * disk_size - cluster_bytes)
            setattr(growth, field, None if m is None else round(m * DAYS_PER_MONTH, 1))
        if growth.days_to_100_pct is None:
            growth.notes.append("at the fitted rate the data never fills the disk")
        growth.notes.append("the disk also holds WAL (up to max_wal_size and more behind slots), logs and "
                            "temporary files, which SQL cannot see: keep a margin")
    return growth
