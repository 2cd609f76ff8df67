"""Airflow adapters for figalign: hooks that turn Airflow connections into figalign settings."""
