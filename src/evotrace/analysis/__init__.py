"""One module per research question; every function maps trace DataFrames to a result DataFrame."""

# the research questions, each an analysis module here and a figure module in evotrace.figures; the
# workflow builds one table rule and one rule per figure for each (workflow/rules/rq.smk)
RQS = ("rq1", "rq2", "rq3", "rq4", "rq5")
