"""The bottom layer: settings, shared errors and the shared vocabulary. Imports nothing of ours."""
