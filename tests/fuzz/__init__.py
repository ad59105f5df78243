"""`make fuzz`: schemathesis over the real API's /openapi.json, plus hostile requests no
schema-driven generator makes. No worker runs, so nothing leaves the machine."""
