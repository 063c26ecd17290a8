"""The content-addressed store and code identity: artefact folders, hashes, code keys, tool versions."""
