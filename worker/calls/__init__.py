"""One call's attempt, in the order it happens: claim, credentials (decrypt, refresh at the
token endpoint), build the onward request with its auth, classify what came back, decide on
a retry, store the result. `pipeline` runs a message's calls through these steps."""
