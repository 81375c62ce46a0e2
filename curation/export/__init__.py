"""Export snapshots: the filter and options, rows from reviewed traces, files and cards, the snapshot itself."""
