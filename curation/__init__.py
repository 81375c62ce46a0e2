"""The workbench domain: prompts, generation, judges, review (with Argilla) and export, plus accounts and their
permissions. Imports db/ and core/, never streamlit."""
