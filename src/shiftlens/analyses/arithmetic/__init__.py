"""Experiment 3, measured: feature arithmetic on multi-object scenes (Lee, Yang & Wang 2020, Figs. 2 and 6).

`expressions` parses `A - B + C` and gives the expected scene; `features` computes the result vector with the blank
canvas completing the coefficients to 1 (docs/arithmetic.md); `retrieval` ranks the expected scene among candidates
that move one object over the grid; `problems` builds the expressions' and the seeded benchmark's problems;
`benchmark` measures them; `tables` turns the numbers into arithmetic.csv and arithmetic_per_problem.csv;
`inversions` inverts operands and results; `config` and `record` are the `shiftlens arithmetic` folder's settings and
run.json (registered with the store). Its other pieces live in their stages: the figures in `figures/arithmetic.py`,
the run the CLI wraps in `api/arithmetic.py`, the page in `site/arithmetic.py`.
"""
