"""Plotly figures of the dashboard, built from DataFrames the queries return (no I/O here).

Trace names are part of the page's contract (the AppTest tests read them): "price", "forming bar",
"MA50", "MA200", "volume", "RSI 14", "MACD", "signal", "histogram", "volume profile",
"golden cross", "death cross", "signals", and each custom indicator's label.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dashboard import indicators

UP, DOWN = "#26a69a", "#ef5350"
PRICE_OVERLAYS = ("SMA", "EMA", "BBANDS")
DIMENSIONS = ("completeness", "uniqueness", "validity", "consistency", "freshness", "timeliness")


def _market_frame() -> go.Figure:
    fig = make_subplots(
        rows=4,
        cols=2,
        shared_xaxes=True,
        column_widths=[0.86, 0.14],
        row_heights=[0.52, 0.14, 0.14, 0.2],
        horizontal_spacing=0.01,
        vertical_spacing=0.025,
        specs=[[{}, {}], [{}, None], [{}, None], [{}, None]],
    )
    fig.update_layout(
        height=820,
        margin=dict(l=10, r=10, t=30, b=10),
        xaxis_rangeslider_visible=False,
        legend=dict(orientation="h", y=1.03, x=0),
        hovermode="x unified",
        bargap=0.05,
    )
    fig.update_yaxes(title_text="price", row=1, col=1)
    fig.update_yaxes(title_text="volume", row=2, col=1)
    fig.update_yaxes(title_text="RSI", range=[0, 100], row=3, col=1)
    fig.update_yaxes(title_text="MACD", row=4, col=1)
    fig.update_yaxes(matches="y", showticklabels=False, row=1, col=2)  # the profile shares the price axis
    fig.update_xaxes(title_text="volume by price", showticklabels=False, row=1, col=2)
    return fig


def market_figure(
    bars: pd.DataFrame,
    *,
    time_column: str,
    ma_columns: tuple[str, str],
    crosses: pd.DataFrame | None = None,
    signals: pd.DataFrame | None = None,
    custom: Sequence[indicators.CustomIndicator] = (),
    intraday: bool = False,
) -> go.Figure:
    """Candles, MA50/200, volume, RSI 14 with 30/70, MACD with signal and histogram, volume profile,
    cross and signal markers, and the user's custom indicators.

    `bars` is ordered by time; for intraday bars an `is_final` column marks the forming bar.
    """
    fig = _market_frame()
    x = bars[time_column]
    final = bars["is_final"].astype(bool).to_numpy() if "is_final" in bars else np.ones(len(bars), bool)
    done, forming = bars[final], bars[~final]
    fig.add_trace(
        go.Candlestick(
            x=done[time_column],
            open=done["open"],
            high=done["high"],
            low=done["low"],
            close=done["close"],
            name="price",
            increasing_line_color=UP,
            decreasing_line_color=DOWN,
        ),
        row=1,
        col=1,
    )
    if len(forming):
        fig.add_trace(
            go.Candlestick(
                x=forming[time_column],
                open=forming["open"],
                high=forming["high"],
                low=forming["low"],
                close=forming["close"],
                name="forming bar",
                opacity=0.45,
                increasing=dict(line=dict(color="#7e8a97"), fillcolor="rgba(0,0,0,0)"),
                decreasing=dict(line=dict(color="#7e8a97"), fillcolor="rgba(0,0,0,0)"),
            ),
            row=1,
            col=1,
        )
    for column, label, colour in zip(ma_columns, ("MA50", "MA200"), ("#f5a623", "#7b61ff"), strict=True):
        fig.add_trace(
            go.Scatter(x=x, y=bars[column], name=label, mode="lines", line=dict(width=1.4, color=colour)),
            row=1,
            col=1,
        )
    closes = bars["close"].to_numpy(dtype=float)
    for indicator in custom:
        for label, values in indicators.compute(indicator, closes).items():
            row = 3 if indicator.kind == "RSI" else 1
            dash = "dot" if indicator.kind == "BBANDS" and not label.endswith("middle") else "dash"
            fig.add_trace(
                go.Scatter(x=x, y=values, name=label, mode="lines", line=dict(width=1.2, dash=dash)),
                row=row,
                col=1,
            )
    volume_colours = np.where(bars["close"].to_numpy() >= bars["open"].to_numpy(), UP, DOWN)
    fig.add_trace(
        go.Bar(x=x, y=bars["volume"], name="volume", marker_color=volume_colours, showlegend=False),
        row=2,
        col=1,
    )
    fig.add_trace(
        go.Scatter(x=x, y=bars["rsi_14"], name="RSI 14", mode="lines", line=dict(color="#5b8def")),
        row=3,
        col=1,
    )
    fig.add_hline(y=70, line=dict(color=DOWN, dash="dash", width=1), row=3, col=1)
    fig.add_hline(y=30, line=dict(color=UP, dash="dash", width=1), row=3, col=1)
    fig.add_trace(go.Scatter(x=x, y=bars["macd"], name="MACD", mode="lines"), row=4, col=1)
    fig.add_trace(go.Scatter(x=x, y=bars["macd_signal"], name="signal", mode="lines"), row=4, col=1)
    hist = bars["macd_hist"].to_numpy(dtype=float)
    fig.add_trace(
        go.Bar(
            x=x,
            y=hist,
            name="histogram",
            marker_color=np.where(np.nan_to_num(hist) >= 0, UP, DOWN),
            showlegend=False,
        ),
        row=4,
        col=1,
    )
    levels, volume_at = indicators.volume_profile(closes, bars["volume"].to_numpy(dtype=float))
    fig.add_trace(
        go.Bar(
            y=levels,
            x=volume_at,
            orientation="h",
            name="volume profile",
            marker_color="rgba(91,141,239,0.5)",
            showlegend=False,
            hovertemplate="price %{y:.2f}: volume %{x:,.0f}<extra></extra>",
        ),
        row=1,
        col=2,
    )
    if crosses is not None and len(crosses):
        for kind, symbol, colour in (
            ("golden", "triangle-up", "#d4a017"),
            ("death", "triangle-down", "#222"),
        ):
            rows = crosses[crosses["cross_type"] == kind]
            if len(rows):
                fig.add_trace(
                    go.Scatter(
                        x=rows["trade_date"],
                        y=rows["ma_50"],
                        mode="markers",
                        name=f"{kind} cross",
                        marker=dict(symbol=symbol, size=13, color=colour, line=dict(width=1, color="white")),
                        text=[f"{kind} cross" for _ in range(len(rows))],
                        hovertemplate="%{text}<br>MA50 %{y:.2f}<extra></extra>",
                    ),
                    row=1,
                    col=1,
                )
    if signals is not None and len(signals):
        at = signals["signal_time"].dt.floor("min")
        close_at = bars.set_index(time_column)["close"]
        y = [float(close_at.get(t, np.nan)) for t in at]
        fig.add_trace(
            go.Scatter(
                x=at,
                y=y,
                mode="markers",
                name="signals",
                marker=dict(symbol="diamond", size=10, color="#e040fb"),
                text=signals["signal_type"].tolist(),
                hovertemplate="%{text}<extra></extra>",
            ),
            row=1,
            col=1,
        )
    fig.update_xaxes(rangebreaks=_rangebreaks(x, intraday), row=1, col=1)
    for row in (2, 3, 4):
        fig.update_xaxes(rangebreaks=_rangebreaks(x, intraday), row=row, col=1)
    return fig


def _rangebreaks(times: pd.Series, intraday: bool) -> list[dict]:
    """Hide time without bars: weekends and missing weekdays (daily), minutes without a bar (intraday)."""
    if times.empty:
        return []
    if intraday:
        stamps = pd.DatetimeIndex(pd.to_datetime(times, utc=True))
        every = pd.date_range(stamps.min(), stamps.max(), freq="1min")
        missing = every.difference(stamps)
        if missing.empty:
            return []
        return [dict(values=[t.strftime("%Y-%m-%d %H:%M:%S") for t in missing], dvalue=60_000)]
    days = pd.DatetimeIndex(pd.to_datetime(times))
    weekdays = pd.bdate_range(days.min(), days.max())
    missing = weekdays.difference(days)
    breaks: list[dict] = [dict(bounds=["sat", "mon"])]
    if not missing.empty:
        breaks.append(dict(values=[d.strftime("%Y-%m-%d") for d in missing]))
    return breaks


def compare_figure(closes: pd.DataFrame) -> go.Figure:
    """Each symbol's closes rebased to 100 at its first day in the range, one line each."""
    fig = go.Figure()
    for symbol, rows in closes.groupby("symbol", sort=True):
        fig.add_trace(
            go.Scatter(
                x=rows["trade_date"],
                y=indicators.rebase(rows["close"].to_numpy(dtype=float)),
                name=str(symbol),
                mode="lines",
            )
        )
    fig.add_hline(y=100, line=dict(color="#999", dash="dot", width=1))
    fig.update_layout(
        height=560,
        margin=dict(l=10, r=10, t=30, b=10),
        yaxis_title="performance (start = 100)",
        hovermode="x unified",
    )
    fig.update_xaxes(rangebreaks=[dict(bounds=["sat", "mon"])])
    return fig


def quality_figure(scores: pd.DataFrame) -> go.Figure:
    """The overall score of each dbt run and each dimension's score, over time."""
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=scores["run_started_at"],
            y=scores["score"],
            name="score",
            mode="lines+markers",
            line=dict(width=3, color="#1f77b4"),
        )
    )
    for dimension in DIMENSIONS:
        fig.add_trace(
            go.Scatter(
                x=scores["run_started_at"],
                y=scores[f"{dimension}_score"],
                name=dimension,
                mode="lines",
                line=dict(width=1, dash="dot"),
                connectgaps=False,
            )
        )
    fig.update_layout(
        height=380, margin=dict(l=10, r=10, t=30, b=10), yaxis=dict(range=[0, 105], title="score")
    )
    return fig


def dimension_figure(latest: pd.Series) -> go.Figure:
    """The latest run's score per dimension (dimensions without tests are left out)."""
    names = [d for d in DIMENSIONS if pd.notna(latest.get(f"{d}_score"))]
    values = [float(latest[f"{d}_score"]) for d in names]
    fig = go.Figure(go.Bar(x=names, y=values, name="dimension score", text=[f"{v:.1f}" for v in values]))
    fig.update_layout(height=300, margin=dict(l=10, r=10, t=30, b=10), yaxis=dict(range=[0, 105]))
    return fig


def dead_letter_figure(letters: pd.DataFrame) -> go.Figure:
    """Dead letters per hour, one stacked bar series per stage and reason."""
    fig = go.Figure()
    for (stage, reason), rows in letters.groupby(["stage", "reason"], sort=True):
        fig.add_trace(go.Bar(x=rows["hour"], y=rows["letters"], name=f"{stage}: {reason}"))
    fig.update_layout(
        barmode="stack", height=340, margin=dict(l=10, r=10, t=30, b=10), yaxis_title="dead letters per hour"
    )
    return fig


def series_figure(series: dict[str, pd.DataFrame], title: str, unit: str) -> go.Figure:
    """Prometheus range series (time, value), one line each."""
    fig = go.Figure()
    for name, frame in series.items():
        fig.add_trace(go.Scatter(x=frame["time"], y=frame["value"], name=name, mode="lines"))
    fig.update_layout(
        title=title, height=280, margin=dict(l=10, r=10, t=40, b=10), yaxis_title=unit, hovermode="x unified"
    )
    return fig


def dag_runs_figure(runs: pd.DataFrame) -> go.Figure:
    fig = go.Figure()
    for dag_id, rows in runs.groupby("dag_id", sort=True):
        fig.add_trace(
            go.Bar(x=rows["start_date"], y=rows["duration_s"], name=str(dag_id), text=rows["state"])
        )
    fig.update_layout(height=300, margin=dict(l=10, r=10, t=30, b=10), yaxis_title="duration (s)")
    return fig
