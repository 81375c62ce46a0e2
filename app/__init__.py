"""Entry points: the Streamlit UI, the `rational` CLI and the background worker."""
