"""Reading an experiment back: `recs ab-report` and the nightly `ab_report` task.

stats.py (sufficient statistics -> comparisons, intervals, SRM, the decision rule; numpy/scipy), frames.py (Spark:
attributed events -> exposures -> per-person outcomes -> per-arm sums), readout.py (the night's readout from the
per-arm sums, pure), report.py (HTML with plots, pure), job.py (reads, writes).
"""
