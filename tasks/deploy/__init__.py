"""Deployment files of a packaged variant, generated from its measured figures (tasks.deploy.write)
and checked by each field's own validator (tasks.deploy.validate)."""
