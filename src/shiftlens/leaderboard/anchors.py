"""Published numbers beside the leaderboard's rows (`anchors.csv`, each row citing its source).

They come from other protocols (Zhang 2019: two random 224 px crops of ImageNet validation images; Chaman &
Dokmanić 2021: circular shifts), so the table and the page label them as such; none is computed here. Zhang's
numbers describe ImageNet-trained weights and join only rows with `imagenet` weights; APS's 100% circular
consistency holds for any weights (the authors: "even before training") and joins every APS row.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

ANCHORS_CSV = Path(__file__).with_name("anchors.csv")
COLUMNS = ["published_accuracy", "published_crop_consistency", "published_circular_consistency",
           "published_protocol", "published_source"]


def load() -> pd.DataFrame:
    return pd.read_csv(ANCHORS_CSV)


def attach(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows with the published numbers of the network each describes (fractions, as the leaderboard's), or NaN."""
    table = load().set_index("model")
    out = rows.copy()
    for col in COLUMNS:
        out[col] = pd.Series([float("nan")] * len(out), dtype=object if col in COLUMNS[3:] else float)
    for i, r in out.iterrows():
        entry = str(r["model"]).partition("@")[0]
        if entry not in table.index:
            continue
        a = table.loc[entry]
        if a["protocol"] == "crop" and (r["untrained"] or r["weights_source"] != "imagenet"):
            continue
        out.at[i, "published_accuracy"] = a["accuracy_pct"] / 100
        out.at[i, "published_crop_consistency"] = a["consistency_pct"] / 100
        out.at[i, "published_circular_consistency"] = a["circular_consistency_pct"] / 100
        out.at[i, "published_protocol"] = f"{a['protocol']} ({a['published_model']} {a['variant']})"
        out.at[i, "published_source"] = a["source"]
    return out
