"""The night page's plots: each a PNG as a `data:` URI, so the page stands alone (no file beside it, no network).

Pure functions of the figures (`jobs.reports.figures`): tonight on the left, the trend across the last nights on
the right. Nights without reports are shaded and their values are NaN, so lines break there: a gap, not a zero.
Drawn with matplotlib's object API on the Agg canvas (no pyplot state, no display needed); text from the data
is never read as mathtext.
"""
from __future__ import annotations

import base64
import io
import math

import numpy as np

WIDTH, HEIGHT, DPI = 11.0, 3.3, 90
OK_COLOR, FAILED_COLOR, NOT_RUN_COLOR = "#2e7d32", "#c62828", "#9e9e9e"
VERDICT_COLORS = {"pass": "#2e7d32", "fallback": "#ef6c00", "fail": "#c62828", "skipped": "#9e9e9e"}
MAX_SERIES = 10  # stacked bars and lines beyond this many series fold into "other"

Trend = list[tuple[str, dict | None]]


def _figure(ncols: int = 2, widths=(1, 1.6)):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH, HEIGHT), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols, width_ratios=list(widths)[:ncols])
    return fig, list(np.atleast_1d(axes))


def _uri(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, facecolor="white")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _draw(build) -> str:
    """Runs `build()` (which returns a Figure) with data text taken literally, and encodes the result."""
    import matplotlib

    with matplotlib.rc_context({"text.parse_math": False, "font.size": 8, "axes.titlesize": 9,
                                "axes.spines.top": False, "axes.spines.right": False}):
        return _uri(build())


def _nothing(ax, text: str) -> None:
    ax.set_axis_off()
    ax.text(0.5, 0.5, text, ha="center", va="center", color="#616161", wrap=True, transform=ax.transAxes)


def _value(v) -> float:
    return float("nan") if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def _trend_axis(ax, trend: Trend, title: str) -> np.ndarray:
    """Night positions 0..n-1 with short date labels; nights without reports shaded. Returns the positions."""
    x = np.arange(len(trend))
    step = max(1, math.ceil(len(trend) / 10))
    shown = x[::-1][::step][::-1]  # counted back from tonight, which always gets its label
    ax.set_xticks(shown, [trend[i][0][5:] for i in shown], rotation=45, ha="right", rotation_mode="anchor")
    ax.set_xlim(-0.6, len(trend) - 0.4)
    for i, (_, f) in enumerate(trend):
        if f is None:
            ax.axvspan(i - 0.5, i + 0.5, color="#f0f0f0", lw=0)
    ax.set_title(title)
    return x


def _series(trend: Trend, get) -> np.ndarray:
    """One value per night; NaN where the night or the figure is missing (a gap)."""
    out = []
    for _, f in trend:
        try:
            out.append(_value(get(f)) if f is not None else float("nan"))
        except (KeyError, TypeError, AttributeError):
            out.append(float("nan"))
    return np.array(out, dtype=float)


def _lines(ax, trend: Trend, series: dict[str, np.ndarray], title: str, ylabel: str = "") -> None:
    x = _trend_axis(ax, trend, title)
    drawn = False
    for name, ys in series.items():
        if np.isnan(ys).all():
            continue
        ax.plot(x, ys, marker="o", ms=3, lw=1.2, label=name)
        drawn = True
    if ylabel:
        ax.set_ylabel(ylabel)
    if drawn:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    else:
        ax.text(0.5, 0.5, "no figures in these nights", ha="center", va="center", color="#616161",
                transform=ax.transAxes)


def _stacked(ax, trend: Trend, per_night: list[dict[str, float] | None], title: str, ylabel: str = "",
             order: list[str] | None = None) -> None:
    """Stacked bars per night; series in `order`, else largest first."""
    x = _trend_axis(ax, trend, title)
    totals: dict[str, float] = {}
    for d in per_night:
        for k, v in (d or {}).items():
            totals[k] = totals.get(k, 0.0) + (v or 0.0)
    ranked = sorted(totals, key=lambda k: (order.index(k) if k in order else len(order), k)) if order else \
        sorted(totals, key=lambda k: -totals[k])
    names = [k for k in ranked if totals[k] > 0]
    keep, fold = names[:MAX_SERIES], names[MAX_SERIES:]
    bottom = np.zeros(len(trend))
    for name in keep + (["other"] if fold else []):
        parts = fold if name == "other" and fold else [name]
        ys = np.array([sum((d or {}).get(p) or 0.0 for p in parts) for d in per_night], dtype=float)
        ax.bar(x, ys, bottom=bottom, width=0.7, label=name)
        bottom += ys
    if ylabel:
        ax.set_ylabel(ylabel)
    if keep:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    else:
        ax.text(0.5, 0.5, "nothing in these nights", ha="center", va="center", color="#616161",
                transform=ax.transAxes)


def _barh(ax, labels: list[str], values: list[float], title: str, colors=None, xlabel: str = "") -> None:
    y = np.arange(len(labels))
    ax.barh(y, values, color=colors or "#1565c0")
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_title(title)
    if xlabel:
        ax.set_xlabel(xlabel)
    top = max([v for v in values if not math.isnan(v)] or [0])
    for yi, v in zip(y, values):
        if not math.isnan(v):
            ax.text(v + top * 0.01, yi, f"{v:,.4g}", va="center", fontsize=7)


# ------------------------------------------------------------------------------------------------- sections

def stage_times(tonight: dict, trend: Trend) -> str:
    def build():
        fig, (now, past) = _figure()
        stages = tonight["stages"]
        colors = [OK_COLOR if s["status"] == "ok" else FAILED_COLOR if s["status"] == "failed" else NOT_RUN_COLOR
                  for s in stages]
        _barh(now, [f"{s['stage']} ({s['status']})" if s["status"] != "ok" else s["stage"] for s in stages],
              [_value(s["seconds"]) if s["seconds"] is not None else 0.0 for s in stages],
              f"stage times {tonight['run_date']}", colors, "seconds")
        per_night = [None if f is None else {s["stage"]: s["seconds"] or 0.0 for s in f["stages"]} for _, f in trend]
        _stacked(past, trend, per_night, "stage times per night", "seconds", order=[s["stage"] for s in stages])
        return fig
    return _draw(build)


def _volume_plot(tonight: dict, trend: Trend, key: str, what: str) -> str:
    def build():
        fig, (now, past) = _figure()
        counts = ((tonight.get("volumes") or {}).get(key)) or {}
        if counts:
            names = sorted(counts, key=lambda k: -counts[k])
            _barh(now, names, [float(counts[k]) for k in names], f"events by {what}, day {tonight['run_date']}",
                  xlabel="events")
        else:
            _nothing(now, f"no events by {what} for {tonight['run_date']}")
        names: dict[str, float] = {}
        for _, f in trend:
            for k, v in (((f or {}).get("volumes") or {}).get(key) or {}).items():
                names[k] = names.get(k, 0) + (v or 0)
        top = [k for k, v in sorted(names.items(), key=lambda kv: -kv[1]) if v > 0][:MAX_SERIES]
        _lines(past, trend, {k: _series(trend, lambda f, k=k: f["volumes"][key][k]) for k in top},
               f"events by {what} per day", "events")
        return fig
    return _draw(build)


def volumes_by_device(tonight: dict, trend: Trend) -> str:
    return _volume_plot(tonight, trend, "devices", "device type")


def volumes_by_event_type(tonight: dict, trend: Trend) -> str:
    return _volume_plot(tonight, trend, "event_types", "event type")


def _reasons(f: dict | None) -> dict[str, float] | None:
    q = (f or {}).get("quarantine")
    if not q:
        return None
    return {(reason if name == "events" else f"{name}: {reason}"): float(n)
            for name, reasons in q["reasons"].items() for reason, n in reasons.items()}


def quarantine(tonight: dict, trend: Trend) -> str:
    def build():
        fig, (now, past) = _figure()
        reasons = _reasons(tonight) or {}
        if reasons:
            names = sorted(reasons, key=lambda k: -reasons[k])[:12]
            _barh(now, names, [reasons[k] for k in names], f"quarantined rows by reason, day {tonight['run_date']}",
                  colors="#ef6c00", xlabel="rows (a row may have several reasons)")
        else:
            _nothing(now, f"no quarantined rows on {tonight['run_date']}" if tonight.get("quarantine") is not None
                     else f"no validation figures for {tonight['run_date']}")
        _stacked(past, trend, [_reasons(f) for _, f in trend], "quarantined rows by reason per day", "rows")
        return fig
    return _draw(build)


IDENTITY_SHOWN = {"new_persons": "new persons", "merges": "merges", "hubs": "hubs cut", "email_hubs": "email hubs cut",
                  "shared_devices": "shared devices (not bridged)"}


def identity(tonight: dict, trend: Trend) -> str:
    def build():
        fig, (now, past) = _figure()
        ident = tonight.get("identity")
        if ident:
            _barh(now, list(IDENTITY_SHOWN.values()), [_value(ident.get(k)) for k in IDENTITY_SHOWN],
                  f"identity {tonight['run_date']}", colors="#6a1b9a")
        else:
            _nothing(now, f"the stitch stage did not finish on {tonight['run_date']}")
        _lines(past, trend, {label: _series(trend, lambda f, k=k: f["identity"][k]) for k, label in IDENTITY_SHOWN.items()},
               "merges and cuts per night")
        return fig
    return _draw(build)


def _best_baseline(metrics: dict) -> float | None:
    values = [m.get("ndcg_at_k") for n, m in metrics.items() if n.startswith("popularity") and m.get("ndcg_at_k")
              is not None]
    return max(values) if values else None


def gate(tonight: dict, trend: Trend) -> str:
    def build():
        fig, (now, past) = _figure()
        g = tonight.get("gate")
        metrics = (g or {}).get("metrics") or {}
        if metrics:
            names = sorted(metrics, key=lambda n: (n != "model", n))
            colors = [VERDICT_COLORS.get(g.get("verdict"), "#1565c0") if n == "model" else "#90a4ae" for n in names]
            _barh(now, names, [_value(metrics[n].get("ndcg_at_k")) for n in names],
                  f"NDCG@{g.get('k')} on the holdout: {g.get('verdict')} ({g.get('rule')})", colors, "NDCG")
        else:
            _nothing(now, f"gate {g.get('verdict')} ({g.get('rule')}): no figures" if g else
                     f"the gate did not run on {tonight['run_date']}")
        series = {"model": _series(trend, lambda f: f["gate"]["metrics"]["model"]["ndcg_at_k"]),
                  "best popularity": _series(trend, lambda f: _best_baseline(f["gate"]["metrics"])),
                  "published pipeline": _series(trend, lambda f: f["gate"]["metrics"]["previous_recipe"]["ndcg_at_k"])}
        _lines(past, trend, series, "NDCG on each night's holdout (dot colour: verdict)", "NDCG")
        x = np.arange(len(trend))
        for i, (_, f) in enumerate(trend):
            verdict = ((f or {}).get("gate") or {}).get("verdict")
            if verdict and not math.isnan(series["model"][i]):
                past.scatter([x[i]], [series["model"][i]], s=40, zorder=3, color=VERDICT_COLORS.get(verdict, "#000"))
        return fig
    return _draw(build)


def _tuned_ndcg(f: dict) -> float | None:
    figs = f["tuning"]["figures"]
    return (figs["best"] if f["tuning"]["adopted"] else figs["current"])["ndcg_at_k"]


def tuning(tonight: dict, trend: Trend) -> str:
    def build():
        fig, (now, past) = _figure()
        t = tonight.get("tuning")
        trials = [tr for tr in (t or {}).get("trials") or [] if tr.get("ndcg_at_k") is not None]
        if trials:
            xs = [tr["trial"] for tr in trials]
            ys = [tr["ndcg_at_k"] for tr in trials]
            now.scatter(xs, ys, s=14, color="#1565c0", label="trial")
            now.scatter([xs[0]], [ys[0]], s=40, color="#616161", label="current settings (trial 0)")
            best = max(range(len(ys)), key=ys.__getitem__)
            now.scatter([xs[best]], [ys[best]], s=60, marker="*", color=OK_COLOR if t.get("adopted") else "#ef6c00",
                        label="best: " + ("adopted" if t.get("adopted") else "not adopted"))
            from matplotlib.ticker import MaxNLocator

            now.xaxis.set_major_locator(MaxNLocator(integer=True))
            now.set_xlabel("trial")
            now.set_ylabel("NDCG")
            now.set_title(f"tuning trials ({t.get('mode')}), {tonight['run_date']}")
            now.legend(fontsize=7, frameon=False)
        else:
            _nothing(now, f"tuning {t.get('mode')}: no trials tonight" if t else
                     f"the tune stage did not finish on {tonight['run_date']}")
        series = {"current settings": _series(trend, lambda f: f["tuning"]["figures"]["current"]["ndcg_at_k"]),
                  "settings used": _series(trend, _tuned_ndcg)}
        _lines(past, trend, series, "tuning NDCG per night (star: new settings adopted)", "NDCG")
        x = np.arange(len(trend))
        for i, (_, f) in enumerate(trend):
            if ((f or {}).get("tuning") or {}).get("adopted") and not math.isnan(series["settings used"][i]):
                past.scatter([x[i]], [series["settings used"][i]], s=70, marker="*", zorder=3, color=OK_COLOR)
        return fig
    return _draw(build)


def coverage(tonight: dict, trend: Trend) -> str:
    def build():
        fig, (now, past) = _figure()
        c = tonight.get("coverage")
        shares = (c or {}).get("exposure_top_shares") or []
        if shares:
            xs = [0.0] + [p for p, _ in shares] + [1.0]
            ys = [0.0] + [s for _, s in shares] + [1.0]
            now.plot(xs, ys, marker="o", ms=3, color="#1565c0", label="person lists")
            now.plot([0, 1], [0, 1], ls="--", color="#9e9e9e", label="every item shown equally")
            now.set_xlabel("share of available items, most shown first")
            now.set_ylabel("share of list slots")
            now.set_title(f"exposure {tonight['run_date']}: Gini {_value(c.get('exposure_gini')):.3f}")
            now.legend(fontsize=7, frameon=False, loc="lower right")
        else:
            _nothing(now, "no exposure figures tonight" if c else
                     f"the publish stage did not finish on {tonight['run_date']}")
        series = {"catalog coverage": _series(trend, lambda f: f["coverage"]["catalog_coverage"]),
                  "available coverage": _series(trend, lambda f: f["coverage"]["available_coverage"]),
                  "exposure Gini": _series(trend, lambda f: f["coverage"]["exposure_gini"]),
                  "top item's list share": _series(trend, lambda f: f["coverage"]["top_item_list_share"])}
        _lines(past, trend, series, "coverage and exposure per night", "share")
        past.set_ylim(-0.02, 1.02)
        return fig
    return _draw(build)
