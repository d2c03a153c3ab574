"""Workflows above both sides of the house: each runs the experiment side (`scaling`), then
the analysis side (`analysis`). Nothing in `scaling/` or `analysis/` imports from here."""
