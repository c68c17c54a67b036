"""Benchmarks of edgematch against the ways others pace the PhotoDNA API (issue 7).

``scripts/bench`` runs everything: the real pipeline (the Procfile's intake, worker and
beat, a private Redis, moto, the sandbox enforcing the rate) and two baselines on the same
infrastructure, then writes ``bench/results/latest.json`` and a plot. Not part of the test
suite.
"""
