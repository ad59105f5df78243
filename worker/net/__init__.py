"""The wire: one event loop and HTTP pool per process (`sender`), one exchange (`send`),
the clients (`transport`), bounded decoding, the egress policy and the operator's overrides."""
