"""The review side: read measured runs back from MLflow and turn them into decisions: comparisons
across runs, models, tiers and hardware, device fits and recommendations, registry aliases, regressions."""
