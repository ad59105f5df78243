"""Request and response bodies of the HTTP API (what /docs shows), one module per resource."""
