"""Pipelines compared at equal compute: tuned with equal effort, run over seeds, ordering claims
judged with paired statistics, and the same comparison re-run with a framework bug switched on.

    ptbench compare configs/comparisons/tiny-arithmetic.yaml --out runs/compare

The pieces: `config` (the comparison file, validated before any training), `search` (each
method's trials), `trials` (one pipeline run per method, settings, seed and bug; resumable),
`curves` (accuracy at each budget point, mean and CI over seeds), `claims` (ordering verdicts)
and `runner` (the phases in order, with the results file).
"""
