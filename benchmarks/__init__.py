"""Microbenchmarks and end-to-end timings for minillm's backends (see RESULTS.md)."""
