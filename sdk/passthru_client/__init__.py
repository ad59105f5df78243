"""passthru_client: the Python SDK of the passthru API.

from passthru_client import Passthru

with Passthru("pt_...", "http://127.0.0.1:8000", user_id="user-42") as pt:
    call = pt.invoke_function(
        "slack-passthrough-request",
        {"method": "GET", "url": "conversations.list?limit=2"},
        wait=10,
    )
    print(call.status, call.network_code, call.output)
"""

from passthru_client._async import AsyncPassthru
from passthru_client._client import Passthru
from passthru_client._errors import (
    APIConnectionError,
    AuthenticationError,
    BadRequest,
    CallTimeout,
    Conflict,
    NotFound,
    PassthruError,
    PermissionDenied,
    RateLimited,
    ServerError,
    WebhookVerificationError,
)
from passthru_client._requests import MAX_WAIT_S
from passthru_client._resources import (
    AccountPage,
    ConnectedAccount,
    ConnectSession,
    Delivery,
    DeliveryAttempt,
    Function,
    WebhookEndpoint,
)
from passthru_client._types import (
    CALL_STATUSES,
    FINAL_STATUSES,
    Attempt,
    Batch,
    BatchAccepted,
    BatchRejected,
    BatchResult,
    Call,
    CallPage,
    ErrorDetail,
    FunctionCall,
    PassthroughParams,
    RetryParams,
    TimeoutParams,
)
from passthru_client._version import __version__
from passthru_client.webhooks import sign_webhook, verify_webhook

__all__ = [
    "CALL_STATUSES",
    "FINAL_STATUSES",
    "MAX_WAIT_S",
    "APIConnectionError",
    "AccountPage",
    "AsyncPassthru",
    "Attempt",
    "AuthenticationError",
    "BadRequest",
    "Batch",
    "BatchAccepted",
    "BatchRejected",
    "BatchResult",
    "Call",
    "CallPage",
    "CallTimeout",
    "Conflict",
    "ConnectSession",
    "ConnectedAccount",
    "Delivery",
    "DeliveryAttempt",
    "ErrorDetail",
    "Function",
    "FunctionCall",
    "NotFound",
    "PassthroughParams",
    "Passthru",
    "PassthruError",
    "PermissionDenied",
    "RateLimited",
    "RetryParams",
    "ServerError",
    "TimeoutParams",
    "WebhookEndpoint",
    "WebhookVerificationError",
    "__version__",
    "sign_webhook",
    "verify_webhook",
]
