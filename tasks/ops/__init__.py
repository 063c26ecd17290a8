"""Server operations: the shared stack (PostgreSQL, Prefect server, MLflow server)."""
