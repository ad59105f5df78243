"""What the API and the worker share, by concern.

- `settings`, `errors`, `logs`, `gc`: the process's configuration, exceptions and logging.
- `keys`: every Redis key and channel name; `broker`: publishing a call's id by task name.
- `db`: engine, tables, ids, migrations.  `calls`: the call state machine and its resource.
- `accounts`: tenants and connected-account credentials.  `crypto`: secrets at rest.
- `catalog`: the apps.  `net`: URLs and the egress policy.
- `ratelimit`: GCRA rules and their Redis store.  `webhooks`: signing and the outbox.
"""
