"""Trace generation: model backends and catalog, versioned templates, strategies, runs and their jobs."""
