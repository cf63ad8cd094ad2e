"""Prefect Automations for what synthobs emits, managed as code (``synthobs automations apply|list|delete``)."""
