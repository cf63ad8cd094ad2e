"""Scores of synthetic tables (pure pandas/numpy): fidelity, privacy, utility."""
