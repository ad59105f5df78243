"""Values the fuzz run sends for `Prefer`, `?wait=` and callback URLs, and what the contract says
about some of them. The OpenAPI describes these as plain strings, so a schema-driven generator
would almost never write `wait=nan` or `http://[::1`: the hooks draw from these lists and the
explicit phase sends every one of them."""

from __future__ import annotations

# `Prefer` on submission: `wait=N` (finite, 0 <= N <= 60) or `respond-async` (docs/DESIGN).
PREFER_OK = (
    "wait=0",
    "wait=0.1",
    "wait=60",
    "respond-async",
    "respond-async, wait=5",
    "return=minimal",  # a preference passthru does not know: ignored (RFC 7240)
)
PREFER_REFUSED = (  # a number of seconds that is not finite or not in [0, 60]: 400
    "wait=nan",
    "wait=-1",
    "wait=61",
    "wait=NaN",
    "wait=inf",
    "wait=-inf",
    "wait=1e309",
    "wait=" + "9" * 400,
    "wait=abc",
)
PREFER_OTHER = (  # odd but not clearly wrong: any 2xx or 4xx will do
    "wait",
    "wait=",
    'wait="5"',
    "wait=1, wait=2",
    "WAIT=0",
    "wait = 0",
    "wait=0;x=y",
    "wait=0x10",
    "wait=1_0",
    "wait=-0",
    "wait=1e-320",
    ",,,",
    "=",
    "respond-async; wait=1",
    "x" * 4096,
)
# Hostile values first: a generator leans towards the start of a list.
PREFER_VALUES = PREFER_REFUSED + PREFER_OTHER + PREFER_OK

# `?wait=` on GET /function-calls/{id}: a long poll of at most 60 s.
WAIT_OK = ("0", "0.1", "60")
WAIT_REFUSED = ("nan", "-1", "61", "inf", "-inf", "1e309", "abc")
WAIT_OTHER = ("", "1e-320", "-0", "0x10", "9" * 400)
WAIT_VALUES = WAIT_REFUSED + WAIT_OTHER + WAIT_OK

# Callback (and webhook endpoint) URLs that can never be delivered to, or carry credentials,
# or are longer than a callback URL may be: 400. `models.net.urls.parse_http_url`, the parser the
# worker delivers with, refuses each of them (tests/fuzz/test_harness.py checks it).
CALLBACK_REFUSED = (
    "http://[::1",
    "http://[::1]]/",
    "http://a:abc/",
    "http://example.com:0/hook",
    "http://example.com:65536/hook",
    "http://example.com:-1/hook",
    "http://example.com:99999999999999999999/hook",
    "https://",
    "https:///hook",
    "ftp://example.com/hook",
    "file:///etc/passwd",
    "javascript:alert(1)",
    "//example.com/hook",
    "",
    " ",
    "https://exa mple.com/hook",
    "https://example.com/\x00",
    "https://example.com/\r\nX-Injected: 1",
    "https://user:secret@example.com/hook",
    "https://example.com:443@evil.example/hook",
    "https://example.com/" + "a" * 10_000,
    "https://example.com/?" + "q=1&" * 50_000,
)
CALLBACK_OTHER = (  # odd or private: any 2xx or 4xx will do
    "https://example.com/hook",
    "https://münchen.example/hook",
    "https://例え.テスト/hook",
    "https://xn--.example/hook",
    "https://" + "a" * 64 + ".example/hook",
    "http://127.0.0.1/hook",
    "http://[::1]/hook",
    "http://[fe80::1%25eth0]/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://localhost:8000/hook",
    "http://0/hook",
    "https://a..b/hook",
    "https://example.com/%00",
    "HTTPS://EXAMPLE.COM/HOOK",
)
CALLBACK_URLS = CALLBACK_REFUSED + CALLBACK_OTHER

# Per connected app: URLs the app accepts (a path or an absolute URL on its hosts), so that a
# submission gets past the URL check to the callback URL and the write.
APP_URLS = {
    "slack": ("conversations.list", "/api/chat.postMessage", "https://slack.com/api/users.info"),
    "pipedrive": ("v1/persons", "https://api.pipedrive.com/api/v2/deals?limit=1"),
    "zendesk": ("tickets.json", "https://acme.zendesk.com/api/v2/users/me.json"),
    "freshdesk": ("tickets", "https://acme.freshdesk.com/api/v2/contacts"),
}
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "get")
