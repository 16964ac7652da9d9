"""Verification (1:1) and identification (1:N) protocols, their data sets and reports."""
