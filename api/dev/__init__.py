"""`passthru dev` and what it needs: running every process on one machine (`run.py`,
`processes.py`), the files it keeps in `.passthru/` (`state.py`), a migrated database with a
demo tenant (`demo_data.py`), a Redis of its own (`embedded_redis.py`) and an offline
stand-in upstream (`demo_upstream.py`). Not part of the HTTP API: nothing the app serves
imports this package (an import contract in `make lint`)."""
