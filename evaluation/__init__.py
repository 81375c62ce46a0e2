"""Evaluation: suites, eval runs, judging, metrics with CIs, comparison of two runs, reports."""
