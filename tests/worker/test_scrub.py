"""The scrubber: no credential a request carried survives in anything stored about it, in any
form it travels in, whatever the upstream echoes; and every auth style names its secrets."""

from __future__ import annotations

import asyncio
import base64
from urllib.parse import quote

import httpx
import orjson
import pytest

from models.accounts.credentials import (
    ApiKeyCredentials,
    BasicCredentials,
    Credentials,
    OAuth2Credentials,
)
from models.catalog.apps import App
from models.catalog.spec import AuthSpec, OAuth2Spec
from worker.calls.auth import auth_for, secrets_of
from worker.calls.onward import OnwardRequest, Scrubbers
from worker.calls.scrub import REDACTED, Scrubber
from worker.calls.timeouts import Timeouts
from worker.net.egress import EgressPolicy
from worker.net.send import Answer, Failure, SendPolicy, send

SECRET = "s3cr3t/+=&key"


def test_every_form_of_a_secret_is_removed() -> None:
    scrub = Scrubber([SECRET, None, ""])
    text = f"a {SECRET} b {quote(SECRET, safe='')} c {SECRET.replace('/', chr(92) + '/')} d"
    assert SECRET not in scrub.text(text)
    assert scrub.text(text).count(REDACTED) == 3
    assert scrub.bytes(text.encode()).count(REDACTED.encode()) == 3


def test_stored_text_loses_control_characters_and_is_cut() -> None:
    scrub = Scrubber(["tok"])
    assert scrub.stored("a\x00b\x1bc tok", 100) == f"abc {REDACTED}"
    assert len(scrub.stored("x" * 1000, 50)) == 50


def _app(auth: AuthSpec, oauth2: OAuth2Spec | None = None) -> App:
    return App(
        slug="x",
        name="X",
        base_url="https://api.example.com",
        allowed_hosts=["api.example.com"],
        auth=auth,
        oauth2=oauth2,
    )


@pytest.mark.parametrize(
    ("app", "credentials", "on_the_wire"),
    [
        (_app(AuthSpec(type="bearer")), OAuth2Credentials(access_token="at-1"), ["at-1"]),
        (
            _app(AuthSpec(type="header", name="X-Key", prefix="Token ")),
            ApiKeyCredentials(api_key="k-2"),
            ["k-2"],
        ),
        (
            _app(AuthSpec(type="query", param="api_key")),
            ApiKeyCredentials(api_key=SECRET),
            ["s3cr3t%2F%2B%3D%26key"],
        ),
        (
            _app(AuthSpec(type="basic")),
            BasicCredentials(username="user", password="pw-3"),
            [base64.b64encode(b"user:pw-3").decode()],
        ),
        (
            _app(AuthSpec(type="basic", api_key_as="username")),
            ApiKeyCredentials(api_key="k-4"),
            [base64.b64encode(b"k-4:").decode()],
        ),
    ],
)
def test_each_auth_style_names_what_it_puts_on_the_wire(
    app: App, credentials: Credentials, on_the_wire: list[str]
) -> None:
    # Given the request an auth style builds
    request = httpx.Request("GET", "https://api.example.com/v1")
    authed = next(auth_for(app.auth, credentials).sync_auth_flow(request))
    wire = " ".join([str(authed.url), *authed.headers.values()])
    # Then every secret it put there is among the ones the scrubber removes
    scrubbed = Scrubber(secrets_of(app, credentials)).text(wire)
    for secret in on_the_wire:
        assert secret in wire
        assert secret not in scrubbed


def test_refresh_tokens_and_the_client_secret_are_scrubbed_too() -> None:
    app = _app(
        AuthSpec(type="bearer"),
        OAuth2Spec(token_url="https://api.example.com/token", client_secret="client-s"),
    )
    creds = OAuth2Credentials(access_token="at", refresh_token="rt-5")
    scrub = Scrubber(secrets_of(app, creds))
    assert scrub.text("rt-5 client-s at-x") == f"{REDACTED} {REDACTED} {REDACTED}-x"


def test_a_messages_calls_share_a_scrubber_until_their_credentials_change() -> None:
    # Given the scrubbers of one message, and two calls with the same app and credentials
    app = _app(AuthSpec(type="bearer"))
    scrubbers = Scrubbers()
    first = OAuth2Credentials(access_token="first-token")
    # Then they share one scrubber, which removes the token
    assert scrubbers.of(app, first) is scrubbers.of(app, first)
    assert scrubbers.of(app, first).text("first-token") == REDACTED
    # And credentials renewed meanwhile (a new token) get a scrubber that removes theirs,
    # even if they are equal in every other way
    renewed = OAuth2Credentials(access_token="renewed-token")
    assert scrubbers.of(app, renewed).text("renewed-token first-token") == (
        f"{REDACTED} first-token"
    )
    # And another app of the same slug (a catalog reloaded: a client secret added) makes
    # a scrubber of its own
    other = _app(
        AuthSpec(type="bearer"),
        OAuth2Spec(token_url="https://api.example.com/token", client_secret="client-s"),
    )
    assert scrubbers.of(other, first).text("client-s") == REDACTED


def _request(app: App, credentials: Credentials, url: str) -> OnwardRequest:
    return OnwardRequest(
        method="GET",
        url=url,
        headers={},
        content=None,
        allowed_hosts=("api.example.com",),
        auth=auth_for(app.auth, credentials),
        timeouts=Timeouts(5.0, 5.0, 5.0),
        scrub=Scrubber(secrets_of(app, credentials)),
    )


def _run(handler: httpx.MockTransport, req: OnwardRequest) -> Answer | Failure:
    async def go() -> Answer | Failure:
        async with httpx.AsyncClient(transport=handler) as client:
            return await send(client, req, SendPolicy({}, EgressPolicy(), 100_000))

    return asyncio.run(go())


def test_an_error_quoting_the_url_never_stores_a_query_secret() -> None:
    # Given a query-auth app and a transport error whose text quotes the full URL
    app = _app(AuthSpec(type="query", param="api_key"))
    creds = ApiKeyCredentials(api_key=SECRET)

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot reach {request.url}", request=request)

    # When sent
    outcome = _run(httpx.MockTransport(handler), _request(app, creds, "https://api.example.com/v1"))
    # Then the stored message keeps the URL without the secret in any encoding
    assert isinstance(outcome, Failure)
    assert "s3cr3t" not in outcome.message
    assert "api.example.com/v1?api_key=" + REDACTED in outcome.message


def test_an_upstream_echoing_the_credential_has_it_removed_from_body_and_headers() -> None:
    # Given an upstream that echoes the request's headers (as httpbin does)
    app = _app(AuthSpec(type="bearer"))
    creds = OAuth2Credentials(access_token="xoxb-echoed-token")

    def handler(request: httpx.Request) -> httpx.Response:
        echoed = request.headers["authorization"]
        return httpx.Response(
            200, json={"headers": {"Authorization": echoed}}, headers={"X-Echo": echoed}
        )

    # When sent
    outcome = _run(httpx.MockTransport(handler), _request(app, creds, "https://api.example.com/v1"))
    # Then neither the body nor the headers kept it
    assert isinstance(outcome, Answer)
    assert b"xoxb-echoed-token" not in outcome.body
    assert REDACTED.encode() in outcome.body
    assert dict(outcome.headers)["x-echo"] == f"Bearer {REDACTED}"


def test_an_unexpected_exception_is_stored_by_its_class_only() -> None:
    app = _app(AuthSpec(type="bearer"))
    creds = OAuth2Credentials(access_token="tok-in-repr")

    def handler(request: httpx.Request) -> httpx.Response:
        raise RuntimeError(f"bug holding {request.headers}")

    outcome = _run(httpx.MockTransport(handler), _request(app, creds, "https://api.example.com/v1"))
    assert isinstance(outcome, Failure)
    assert outcome.error == "internal_error"
    assert "tok-in-repr" not in outcome.message
    assert outcome.message == "RuntimeError while sending"


def test_a_secret_rebuilt_by_json_decoding_is_removed_from_the_output() -> None:
    # Given an answer whose JSON spells the token with escapes the raw bytes do not show
    from datetime import UTC, datetime

    from worker.calls.outcome import classify
    from worker.calls.retry import GiveUp

    token = "xoxb-1234567890-SECRET"
    body = b'{"seen": "xoxb-\\u0031234567890-SECRET", "keyed": {"xoxb-1234567890-SECRET": 1}}'
    scrub = Scrubber([token])
    assert token.encode() not in scrub.bytes(body)  # the raw scrub cannot see it
    answer = Answer(200, [("content-type", "application/json")], scrub.bytes(body), False, 1)
    # When classified with the request's scrubber
    result = classify(answer, GiveUp("done"), datetime.now(UTC), scrub)
    # Then neither a value nor a key of the stored output holds it
    stored = orjson.dumps(result.output)
    assert token.encode() not in stored
    assert orjson.loads(stored) == {"seen": REDACTED, "keyed": {REDACTED: 1}}


@pytest.mark.parametrize("charset", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-be"])
def test_an_answer_in_a_wide_charset_loses_the_token_too(charset: str) -> None:
    # Given an echo of the token in a charset where each letter is followed by NULs (read as
    # UTF-8 and stripped of them, it would give the token back)
    token = "xoxp-1234567890-ABCDEFGHIJKLMNOP"
    body = f'{{"echo": "Bearer {token}", "quoted": "{quote(SECRET, safe="")}"}}'.encode(charset)
    # When scrubbed as raw bytes
    scrubbed = Scrubber([token, SECRET]).bytes(body)
    # Then no form is left, and what replaced them reads as the same charset
    assert token not in scrubbed.decode("utf-8", errors="replace").replace("\0", "")
    text = scrubbed.decode(charset)
    assert quote(SECRET, safe="") not in text
    assert text == f'{{"echo": "Bearer {REDACTED}", "quoted": "{REDACTED}"}}'


def test_a_secret_beyond_latin_1_is_found_in_a_wide_charset_without_a_nul() -> None:
    # Given a password of characters whose UTF-16 has no NUL byte
    password = "\u5bc6\u7801\u5bc6\u7801"
    body = f"echo {password}".encode("utf-16-be")[10:]  # the password alone, no NUL before
    assert b"\0" not in body
    # When scrubbed / Then it is gone
    assert Scrubber([password]).bytes(body) == REDACTED.encode("utf-16-be")


def test_header_names_and_lower_case_escapes_are_scrubbed() -> None:
    scrub = Scrubber([SECRET])
    headers = scrub.headers([(f"x-{SECRET}", "1"), ("x-echo", quote(SECRET, safe="").lower())])
    assert SECRET not in str(headers)
    assert "s3cr3t%2f" not in str(headers)


def test_a_cut_never_leaves_a_prefix_of_the_token() -> None:
    # Given an upstream echoing the token after padding chosen so the body cap falls inside it
    app = _app(AuthSpec(type="bearer"))
    creds = OAuth2Credentials(access_token="xoxb-0123456789abcdef")
    padding = b"p" * 100
    cap = len(padding) + len("Bearer xoxb-0123456789") - 1

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=padding + request.headers["authorization"].encode())

    async def go() -> Answer | Failure:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            return await send(
                client,
                _request(app, creds, "https://api.example.com/v1"),
                SendPolicy({}, EgressPolicy(), cap),
            )

    # When read / Then the kept part is cut, and holds no piece of the token
    outcome = asyncio.run(go())
    assert isinstance(outcome, Answer)
    assert outcome.truncated is True
    assert b"xoxb-0123" not in outcome.body


def _stored(scrub: Scrubber, body: bytes) -> bytes:
    """What the worker stores of an answer with `body`: the raw bytes scrubbed, then
    classified with the same scrubber, as the output column holds it."""
    from datetime import UTC, datetime

    from worker.calls.outcome import classify
    from worker.calls.retry import GiveUp

    answer = Answer(200, [("content-type", "application/json")], scrub.bytes(body), False, 1)
    output = classify(answer, GiveUp("done"), datetime.now(UTC), scrub).output
    return output.encode() if isinstance(output, str) else orjson.dumps(output)


@pytest.mark.parametrize(
    "secret", ['xoxb-12345-"SECRET"-67890', "pa\\ss-w0rd-SECRET", 'a/b"c\\d', "p\u00e4ssw\u00f6rd"]
)
@pytest.mark.parametrize("ensure_ascii", [False, True])
def test_a_secret_json_escapes_is_removed_as_the_upstream_spells_it(
    secret: str, ensure_ascii: bool
) -> None:
    # Given an upstream echoing a credential holding `"`, `\`, `/` or letters beyond ASCII in
    # its JSON (which escapes them; some encoders write `\u00e4` and `\/` too)
    import json

    echoed = json.dumps({"echo": f"Bearer {secret}"}, ensure_ascii=ensure_ascii).encode()
    scrub = Scrubber([secret])
    # When stored / Then neither the raw bytes nor the output, read back, hold it
    assert secret.encode() not in scrub.bytes(echoed)
    stored = _stored(scrub, echoed)
    assert secret not in orjson.loads(stored)["echo"]
    assert orjson.loads(stored) == {"echo": f"Bearer {REDACTED}"}
    assert scrub.text(json.dumps(secret)) == f'"{REDACTED}"'


def test_json_kept_as_text_loses_a_secret_its_escapes_spell() -> None:
    # Given JSON too large to decode (more arrays than MAX_JSON_CONTAINERS), kept as text,
    # which spells the token with an escape
    token = "xoxb-1234567890-SECRET"
    body = b'{"seen": "xoxb-\\u0031234567890-SECRET", "pad": [' + b"[]," * 100_001 + b"[]]}"
    # When stored
    stored = _stored(Scrubber([token]), body)
    # Then the text holds it in no form, even once a client parses it as JSON
    assert token.encode() not in stored
    assert b"\\u0031234567890" not in stored
    assert orjson.loads(stored)["seen"] == REDACTED


def test_text_without_a_secret_keeps_its_escapes() -> None:
    text = '{"a": "\\u0041\\n", "b": "\\\\u0031"}'
    assert Scrubber(["xoxb-1234567890-SECRET"]).value(text) == text
