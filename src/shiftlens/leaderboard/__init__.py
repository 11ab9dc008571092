"""`shiftlens leaderboard`: many networks ranked by how shift-invariant they are (docs/leaderboard.md).

Each model is one ordinary `shiftlens run` folder (plus one circular-shift run for its circular consistency), and
the leaderboard table is read from those folders' tables: `models` (specs, globs, the default set), `metrics` (the
numbers and ranks), `anchors` (published numbers beside them), `run` (the command), `site` (the Leaderboard page).
"""
