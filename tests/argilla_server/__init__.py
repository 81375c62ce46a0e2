"""Test infrastructure for a real argilla-server (launcher, osmem engine, venv build, pytest fixture)."""
