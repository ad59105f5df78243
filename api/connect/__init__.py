"""Hosted connect pages: the links a tenant sends its end users to, the pages behind them,
the OAuth2 dance, and the account each one stores."""
