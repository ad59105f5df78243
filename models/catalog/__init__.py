"""The app catalog: the built-in `apps.yaml` and the operator's additions, parsed and checked."""
