"""OAuth2 shared by both sides: token endpoints, for the worker's refreshes and the API's
code exchanges."""
