"""What a worker tells the API processes waiting on calls (`Prefer: wait`, `?wait=`), on
two pub/sub channels: the ids of finished calls (CHANNEL_CALL_DONE, comma-separated), and
the result of each finished interactive call (CHANNEL_CALL_RESULT, `{id} {CallResult
JSON}`), so that the API answers a waiting caller from the notice instead of reading the
call again. Notices are sent only after the results are committed, so they say what the
database says; a result above RESULT_NOTICE_MAX_BYTES goes out as a bare id instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson
import redis

from models.calls.resources import CallResult
from models.keys import CHANNEL_CALL_DONE, CHANNEL_CALL_RESULT

# Results larger than this are not sent to every API process: waiters read the call.
RESULT_NOTICE_MAX_BYTES = 64 * 1024


def result_notice(result: CallResult) -> bytes | None:
    """`{id} {json}`, or None when the result is too large to announce. orjson writes it:
    a worker holds outputs already encoded (`orjson.Fragment`) until they are stored."""
    body = orjson.dumps({name: getattr(result, name) for name in CallResult.model_fields})
    if len(body) > RESULT_NOTICE_MAX_BYTES:
        return None
    return result.id.encode() + b" " + body


def parse_result_notice(data: bytes) -> tuple[str, bytes]:
    """(call id, the result's JSON) from a CHANNEL_CALL_RESULT message."""
    call_id, _, body = data.partition(b" ")
    return call_id.decode(), body


def parse_done(data: bytes) -> list[str]:
    """The call ids in a CHANNEL_CALL_DONE message."""
    return data.decode().split(",")


def publish_notices(
    client: redis.Redis, call_ids: Sequence[str], results: Sequence[CallResult] = ()
) -> None:
    """Announce finished calls in one round trip: each of `results` as a notice, every other
    id of `call_ids` in one CHANNEL_CALL_DONE message."""
    notices = {r.id: notice for r in results if (notice := result_notice(r)) is not None}
    bare = [call_id for call_id in call_ids if call_id not in notices]
    with client.pipeline(transaction=False) as pipe:
        for notice in notices.values():
            pipe.publish(CHANNEL_CALL_RESULT, notice)
        if bare:
            pipe.publish(CHANNEL_CALL_DONE, ",".join(bare))
        pipe.execute()
