"""Deployment files of a packaged variant, generated from its measured figures (tasks.formats.gguf.deploy.write)
and checked by each field's own validator (tasks.formats.gguf.deploy.validate)."""
