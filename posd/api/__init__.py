"""The local POS API (local-api.md): HTTP/JSON on a Unix socket and, with a bearer token, on
loopback TCP; and the small client posd's own commands use.

Modules:
- `server`: `LocalApi`, the listeners as a component (socket mode and group, stale-socket
  checks); `ApiStartError` when it cannot listen.
- `routes`: the handlers, the validation of each request, the event stream and its limits
  (`MAX_BODY_BYTES`, `MAX_EVENT_STREAMS`); `StateSource`, what builds the status
  (posd.monitoring's state builder).
- `errors`: the error shape of local-api.md.
- `connections`: accepting, capping and timing out connections; JSON answers to what the
  HTTP parser refuses (`connection_cap`, `REQUEST_TIMEOUT_S`).
- `client`: `ApiClient` for `posd status`, `posd saf` and the demo; `ApiUnavailable`,
  `ApiPermissionDenied`, `ApiRequestError`.
"""

from posd.api.client import ApiClient, ApiPermissionDenied, ApiRequestError, ApiUnavailable
from posd.api.connections import REQUEST_TIMEOUT_S, connection_cap
from posd.api.routes import BODY_TIMEOUT_S, MAX_BODY_BYTES, MAX_EVENT_STREAMS, StateSource
from posd.api.server import ApiStartError, LocalApi, bind_unix_socket

__all__ = [
    "BODY_TIMEOUT_S",
    "MAX_BODY_BYTES",
    "MAX_EVENT_STREAMS",
    "REQUEST_TIMEOUT_S",
    "ApiClient",
    "ApiPermissionDenied",
    "ApiRequestError",
    "ApiStartError",
    "ApiUnavailable",
    "LocalApi",
    "StateSource",
    "bind_unix_socket",
    "connection_cap",
]
