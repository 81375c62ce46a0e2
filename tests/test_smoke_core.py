from db.migrate import schema_diff


def test_migrations_match_models(engine):
    """Autogenerate finds no difference between the models and the migrated database."""
    assert schema_diff(engine) == []


def test_sensitive_categories_match_however_a_team_spells_them():
    from core.vocabulary import sensitive_by_default

    for name in ("mental_health", "Self-Harm", "self_harm", "Suicide, self-harm", "suicidal ideation",
                 "child-abuse", "Sexual content"):
        assert sensitive_by_default(name), name
    for name in ("weapons", "cyber", "", None, "harassment"):
        assert not sensitive_by_default(name), name
