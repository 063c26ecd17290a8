# MLflow's own image at the version slmforge pins, plus the PostgreSQL driver it lacks.
FROM ghcr.io/mlflow/mlflow:v3.17.2
RUN pip install --no-cache-dir "psycopg[binary]==3.3.9"
USER 1000
