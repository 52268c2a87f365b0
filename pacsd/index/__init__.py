"""The SQLite index: models, identity rules and the group-commit writer."""
