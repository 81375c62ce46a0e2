"""`python -m app.cli …`: the same as the `rational` command."""
from app.cli import main

main()
