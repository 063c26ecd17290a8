"""The host a step runs on: hardware facts, the core lock, process handling shared by every server."""
