"""Data layer: SQLModel tables, the engine factory, migrations, job claiming. Imports nothing of ours."""
