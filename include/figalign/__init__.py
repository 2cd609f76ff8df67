"""figalign: figure–text datasets from open-access scientific papers.

The package holds all logic; Airflow DAGs in ``dags/`` only wire it together.
"""

__version__ = "0.1.0"
