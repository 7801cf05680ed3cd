"""One module per research question; every function maps trace DataFrames to a result DataFrame."""
