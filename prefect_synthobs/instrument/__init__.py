"""Instrumentation: observe, the run scope and listener, and the one recording seam."""
