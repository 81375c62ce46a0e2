from db.migrate import schema_diff


def test_migrations_match_models(engine):
    """Autogenerate finds no difference between the models and the migrated database."""
    assert schema_diff(engine) == []
