"""The HTTP side: the FastAPI app and its routes, and the `passthru` command line (with
`passthru dev` in `api/dev/`, which the app never imports)."""
