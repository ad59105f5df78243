"""The HTTP side: FastAPI app, routes, auth, and the `passthru` command line."""
