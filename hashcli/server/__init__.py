"""The HTTP service of ``hashret serve`` (FastAPI): an interface layer like ``hashcli.cli``,
over the retrieval layer of the workflows."""
