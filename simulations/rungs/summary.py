"""Summaries of the ladder's CSVs shared by the report and the figures: per-setting event brackets, the
agreement of a measured step with a predicted one (through :mod:`clop.stats`), and the rows of the ladder.

Conventions. A bracketed event's measured step in a trial is the geometric mid-point sqrt(lo hi) of its final
bracket. Agreement with a prediction is judged on the per-trial log ratios log(measured / predicted) with
:func:`clop.stats.direction_verdict` (at least :data:`MIN_TRIALS` trials; the spread floored at the bracket's
resolution, :func:`floored_gain`): an interval inside +-``band`` (the search's resolution plus the measured
finite-horizon excess) means the prediction holds; an interval above (below) 0 means the event comes later
(earlier) than predicted. Rung 0 is read from Figure 3's data (``figure3_max_lr.csv``: Appendix D's eta,
converted here to the raw lr of L_class as a sum, lr = eta / (2 (k - 1)), the units of rung 1).

``ladder_rows.csv`` (written by :mod:`simulations.rungs.report`): one row per (rung, model, optimiser, loss,
event) with the columns of :data:`LADDER_COLUMNS`; ``status`` is ``bracketed`` (the event starts between
``measured_lo`` and ``measured_hi``, medians over trials), ``none`` (no event up to ``measured_lo``) or
``below`` (the event at every tested lr). Later rungs append rows with the same columns in files named
``ladder_rows_*.csv`` in the same folder.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pandas as pd

from clop.stats import PairedGain, direction_verdict, margin_se, paired_gain, raises_judge

__all__ = ["LADDER_COLUMNS", "MIN_TRIALS", "floored_gain", "load", "figure3_path", "mid", "event_table", "agreement", "ladder_rows",
           "read_ladder_rows", "horizon_excess"]

LADDER_COLUMNS = ("rung", "model", "optimiser", "loss", "setting", "event", "units", "predicted", "prediction",
                  "status", "measured_lo", "measured_hi", "trials", "ratio", "eta_emb", "note")


def load(out: Path, name: str) -> pd.DataFrame | None:
    """``out/name`` as a DataFrame, or None when missing or empty."""
    path = Path(out) / name
    if not path.exists() or path.stat().st_size == 0:
        return None
    df = pd.read_csv(path)
    return df if len(df) else None


def figure3_path(out: Path) -> Path:
    """Figure 3's data: beside ``out`` when ``out`` is ``paper_figures/ladder``, else in this repository."""
    near = Path(out).resolve().parent / "figure3_max_lr.csv"
    if near.exists():
        return near
    return Path(__file__).resolve().parents[2] / "paper_figures" / "figure3_max_lr.csv"


def mid(lo, hi):
    """Geometric mid-point of a bracket (NaN unless both ends are finite and positive)."""
    lo, hi = np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(np.isfinite(lo) & np.isfinite(hi) & (lo > 0), np.sqrt(lo * hi), np.nan)


def event_table(ev: pd.DataFrame, keys: list[str], predicted: str) -> pd.DataFrame:
    """Per (keys, event): trials, how many bracketed / none / below, median lo and hi, and the per-trial
    log ratios to the column ``predicted`` (a list, for :func:`agreement`)."""
    rows = []
    for key, g in ev.groupby(keys + ["event"], sort=False, dropna=False):
        m = mid(g["lo"], g["hi"])
        pred = g[predicted].to_numpy(dtype=float)
        with np.errstate(invalid="ignore", divide="ignore"):
            logs = np.log(m / pred)
        row = dict(zip(keys + ["event"], key))
        row.update({
            "trials": len(g), "bracketed": int((g["status"] == "bracketed").sum()),
            "none": int((g["status"] == "none").sum()), "below": int((g["status"] == "below").sum()),
            "lo": float(np.nanmedian(g["lo"])) if g["lo"].notna().any() else math.nan,
            "hi": float(np.median(g["hi"])), "hi_min": float(g["hi"].min()), "predicted": float(np.nanmedian(pred)) if np.isfinite(pred).any()
            else math.nan, "log_ratios": [float(v) for v in logs if np.isfinite(v)],
            "state_hi": _mode(g["state_hi"]), "eta_emb_hi": float(np.nanmedian(g["eta_emb_hi"]))
            if g["eta_emb_hi"].notna().any() else math.nan,
        })
        rows.append(row)
    return pd.DataFrame(rows)


def _mode(values: pd.Series) -> str:
    v = values.dropna().astype(str)
    v = v[v != ""]
    return "" if v.empty else v.value_counts().index[0]


MIN_TRIALS = 6
"""The fewest paired samples a verdict may rest on (the design card's rule)."""


def floored_gain(log_ratios: list[float], floor: float) -> PairedGain:
    """:func:`clop.stats.paired_gain` with the standard deviation floored at ``floor`` (the resolution of a
    measurement: brackets of relative width w have a mid-point error of about log(1 + w)/sqrt(12))."""
    g = paired_gain(log_ratios)
    if g.n < 2 or g.std >= floor:
        return g
    from scipy import stats

    se = floor / math.sqrt(g.n)
    half = float(stats.t.ppf(0.975, g.n - 1)) * se
    return dataclasses.replace(g, std=floor, se=se, low=g.mean - half, high=g.mean + half)


def agreement(log_ratios: list[float], band: float, resolution: float = 0.02) -> tuple[str, str, str]:
    """(verdict, result text, detail) for "the measured step equals the predicted one" (module docstring)."""
    if len(log_ratios) < MIN_TRIALS:
        return "inconclusive", f"n = {len(log_ratios)}", f"fewer than {MIN_TRIALS} bracketed trials"
    g = floored_gain(log_ratios, math.log1p(resolution) / math.sqrt(12))
    judge = raises_judge(band)
    v, reason = direction_verdict(g, band)
    ratio = math.exp(g.mean)
    text = (f"measured/predicted = {ratio:.4g} (log ratio {g.mean:+.4f} [{g.low:+.4f}, {g.high:+.4f}], n = {g.n}; "
            f"band +-{band:.3f}; margin {margin_se(g, judge):.1f} SE)")
    if v == "fails" and reason.startswith("no effect"):
        return "holds", text, "the interval lies inside the band"
    if v == "holds":
        return "fails", text, "the event comes later than predicted"
    if v == "fails":
        return "fails", text, "the event comes earlier than predicted"
    return "inconclusive", text, reason


def horizon_excess(out: Path) -> pd.DataFrame | None:
    """Per loss and event: the relative excess of the measured step at the base horizon over the one at the
    longer horizon, median over trials (from rung1_events_base and rung1_events_horizon)."""
    base, longer = load(out, "rung1_events_base.csv"), load(out, "rung1_events_horizon.csv")
    if base is None or longer is None:
        return None
    m = base.merge(longer, on=["loss", "trial", "event"], suffixes=("", "_long"))
    m["excess"] = mid(m["lo"], m["hi"]) / mid(m["lo_long"], m["hi_long"]) - 1.0
    rows = []
    for (loss, event), g in m.groupby(["loss", "event"], sort=False):
        e = g["excess"].to_numpy(dtype=float)
        if np.isfinite(e).any():
            rows.append({"loss": loss, "event": event, "steps": int(g["steps"].iloc[0]),
                         "steps_long": int(g["steps_long"].iloc[0]), "excess": float(np.nanmedian(e)),
                         "excess_max": float(np.nanmax(e)), "trials": int(np.isfinite(e).sum())})
    return pd.DataFrame(rows)


def _row(rung, model, optimiser, loss, setting, event, units, predicted, prediction, g: dict, note="") -> dict:
    status = "bracketed" if g["bracketed"] == g["trials"] else "none" if g["none"] == g["trials"] else \
        "below" if g["below"] == g["trials"] else "mixed"
    ratio = math.exp(float(np.median(g["log_ratios"]))) if g["log_ratios"] else math.nan
    return {"rung": rung, "model": model, "optimiser": optimiser, "loss": loss, "setting": setting, "event": event,
            "units": units, "predicted": predicted, "prediction": prediction, "status": status,
            "measured_lo": g["lo"], "measured_hi": g["hi"], "trials": g["trials"], "ratio": ratio,
            "eta_emb": g.get("eta_emb_hi", math.nan), "note": note}


def _rung0_rows(out: Path) -> list[dict]:
    path = figure3_path(out)
    if not path.exists():
        return []
    f3 = pd.read_csv(path)
    rows = []
    for k in (3, 10, 30, 100):
        g = f3[f3["k"] == k]
        if g.empty or g["max_lr"].isna().all():
            continue
        scale = 1.0 / (2.0 * (k - 1))
        lo, hi = g["max_lr"].to_numpy() * scale, g["min_collapse_lr"].to_numpy() * scale
        pred = float(g["critical_lr"].iloc[0]) * scale
        logs = [float(v) for v in np.log(mid(lo, hi) / pred) if np.isfinite(v)]
        summary = {"bracketed": len(g), "none": 0, "below": 0, "trials": len(g), "lo": float(np.median(lo)),
                   "hi": float(np.median(hi)), "log_ratios": logs, "eta_emb_hi": math.nan}
        rows.append(_row(0, "free class embeddings", "normalised step", "lclass", f"k={k} m={int(g['m'].iloc[0])}",
                         "collapse", "raw lr of L_class (eta / (2(k-1)))", pred, "2(k-1)/(k-2) (Theorem 1, corrected)",
                         summary, note=f"{int(g['steps'].iloc[0])} steps (Figure 3)"))
    return rows


def ladder_rows(out: Path) -> pd.DataFrame:
    """The ladder's rows for rungs 0-2 from the CSVs in ``out`` (module docstring)."""
    rows = _rung0_rows(out)
    for part, start in (("base", "random start"), ("local", "from the optimum")):
        ev = load(out, f"rung1_events_{part}.csv")
        if ev is None:
            continue
        tab = event_table(ev, ["loss", "k", "n", "d", "tau"], "critical")
        for _, g in tab.iterrows():
            tau = "" if pd.isna(g["tau"]) else f" tau={g['tau']:g}"
            rows.append(_row(1, "free instance embeddings", "normalised step", g["loss"],
                             f"k={g['k']} n={g['n']} d={g['d']}{tau}, {start}", g["event"], "raw lr of the loss",
                             g["predicted"], "2/lambda_max(H_T - C) at the optimum", g.to_dict()))
    ev2 = load(out, "rung2_events.csv")
    if ev2 is not None:
        tab = event_table(ev2, ["model", "optimiser", "loss", "k", "n", "d"], "predicted")
        for _, g in tab.iterrows():
            pred_name = {"gd": "2/lambda_max(H)", "momentum": "2(1+beta)/lambda_max(H)",
                         "lars": "LARS oscillation estimate"}[g["optimiser"]]
            rows.append(_row(2, f"{g['model']} encoder (digits)", g["optimiser"], g["loss"],
                             f"k={g['k']} n={g['n']} D={g['d']}", g["event"], "raw lr", g["predicted"], pred_name,
                             g.to_dict()))
    return pd.DataFrame(rows, columns=list(LADDER_COLUMNS))


def read_ladder_rows(out: Path) -> pd.DataFrame:
    """``ladder_rows.csv`` and every ``ladder_rows_*.csv`` of later rungs in ``out``, concatenated."""
    frames = [pd.read_csv(p) for p in sorted(Path(out).glob("ladder_rows*.csv")) if p.stat().st_size]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(LADDER_COLUMNS))
