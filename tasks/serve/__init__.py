"""Serving checks of packaged variants: start an OpenAI-compatible server on loopback, check the
content of its answers, load it with Locust (tasks.serve.check); formats call it from `serve()`."""
