"""The provenance store: models, sessions, upserts, the work queue and migrations."""
