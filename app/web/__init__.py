"""The Streamlit web app: navigation (the menu, defined once), views, and what views share."""
