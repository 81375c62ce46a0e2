"""Prompt import, mutation, generation, judges, Argilla sync and export. Imports db/, never streamlit."""
