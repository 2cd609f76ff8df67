# figalign on the official Airflow image: the same image runs api-server, scheduler,
# dag-processor, triggerer and Celery workers.
FROM apache/airflow:3.3.2-python3.11
USER root
RUN apt-get update && apt-get install -y --no-install-recommends ghostscript && rm -rf /var/lib/apt/lists/*
USER airflow
COPY --chown=airflow:root requirements.txt constraints.txt pyproject.toml README.md /opt/figalign/
COPY --chown=airflow:root include /opt/figalign/include
RUN pip install --no-cache-dir -r /opt/figalign/requirements.txt -c /opt/figalign/constraints.txt \
 && pip install --no-cache-dir --no-deps -e /opt/figalign
COPY --chown=airflow:root dags /opt/airflow/dags
COPY --chown=airflow:root plugins /opt/airflow/plugins
