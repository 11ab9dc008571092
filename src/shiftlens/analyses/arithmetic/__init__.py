"""Experiment 3, measured: feature arithmetic on multi-object scenes (Lee, Yang & Wang 2020, Figs. 2 and 6).

`expressions` parses `A - B + C` and gives the expected scene; `features` computes the result vector with the blank
canvas completing the coefficients to 1 (docs/arithmetic.md); `retrieval` ranks the expected scene among candidates
that move one object over the grid; `problems` builds the expressions' and the seeded benchmark's problems;
`tables` turns the numbers into arithmetic.csv and arithmetic_per_problem.csv; `run` is the API the CLI wraps.
"""
