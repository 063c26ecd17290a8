"""Everything that writes MLflow: the client edge, a run's parent/child runs and report, the UI view."""
