"""Configuration: one settings model, the Prefect blocks built on it, and the active settings."""
