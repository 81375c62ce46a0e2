"""Workflows that drive every stage through its own functions: the RATIONAL loop and its report."""
