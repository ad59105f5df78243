"""The web console (`GET /console`): server-rendered pages over the API's own queries."""
