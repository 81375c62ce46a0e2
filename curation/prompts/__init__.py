"""Prompts: import (readers, importer), identity, built-in sets, mutations and the contamination check."""
