"""The review side: read measured runs back from MLflow and turn them into decisions."""
