"""Hydra sweeper plugin for scaling sweeps (hydra/sweeper=scaling); the logic is the scaling.sweep package."""
