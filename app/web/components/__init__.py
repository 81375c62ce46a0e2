"""Small Streamlit components of our own."""
