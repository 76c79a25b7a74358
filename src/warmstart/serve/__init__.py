"""warmstart serve: a registered version behind KServe's model server (see serve.server)."""
