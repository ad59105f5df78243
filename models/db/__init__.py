"""Where calls are kept: the engine and sessions, the tables, ids and schema migrations."""
