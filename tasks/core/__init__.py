"""The pipeline's core: errors, config reading, names, gates, references, resources, progress, secrets."""
