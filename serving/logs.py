"""The service's log: a client error (4xx) is one line with its status, reason and request id; a server error (5xx)
keeps BentoML's ERROR line and traceback.

BentoML 1.4 logs every exception an API raises at ERROR with its traceback (`log_exception` in
bentoml._internal.server.http_app, on the logger of that name), a pydantic ValidationError (its 400) included:
about 1.7 KB a bad request, and the traceback quotes the input. A filter on that logger rewrites the records of
client errors; the request guard logs its own refusals (401, 408, 413, 415) the same way. BentoML's handler ends
every line with the request's trace (about 110 characters: trace, span, sampled, service name); a client error's
line drops it, since it names the request id (the span) itself: about 160 bytes a bad request, not 1.7 KB.
"""

from __future__ import annotations

import logging

HTTP_APP_LOGGER = "bentoml._internal.server.http_app"  # where BentoML logs an API's exception
# Under "bentoml.": BentoML's server logging configuration (its handler, format and level) applies.
logger = logging.getLogger("bentoml.serving")
MAX_LISTED_ERRORS = 3


def request_id() -> str:
    """BentoML's id of the request being served, as its X-BentoML-Request-ID header shows it ("-" outside a request)."""
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml._internal.context import trace_context

    if trace_context.request_id is None:
        return "-"
    return format(trace_context.request_id, BentoMLContainer.logging_formatting.get()["span_id"])


def client_status(error: BaseException | None) -> int | None:
    """The 4xx status BentoML answers this exception with; None for a server error (or no exception)."""
    from bentoml.exceptions import BentoMLException
    from pydantic import ValidationError

    if isinstance(error, ValidationError):
        return 400
    if isinstance(error, BentoMLException) and error.error_code.value < 500:
        return error.error_code.value
    return None


def reason(error: BaseException) -> str:
    """What was wrong, without the input: pydantic's error types by field, else the exception's class.

    A location names schema fields and list positions only (the APIs' schemas have no free-form mappings), never
    a value; a BentoMLException's message may quote the input, so only its class is named.
    """
    from pydantic import ValidationError

    if not isinstance(error, ValidationError):
        return type(error).__name__
    found = [
        f"{item['type']} at {'.'.join(map(str, item['loc'])) or 'body'}"
        for item in error.errors(include_url=False, include_context=False, include_input=False)
    ]
    more = len(found) - MAX_LISTED_ERRORS
    return ", ".join(found[:MAX_LISTED_ERRORS]) + (f" and {more} more" if more > 0 else "")


CLIENT_ERROR_LINE = "client error %d %s %s (request %s): %s"
CLIENT_ERROR = "client_error"  # the attribute that marks a client error's record


def log_client_error(status: int, method: str, path: str, why: str) -> None:
    """One line for a client error: status, method, path, request id and reason."""
    logger.info(CLIENT_ERROR_LINE, status, method, path, request_id(), why, extra={CLIENT_ERROR: True})


class ClientErrorsInOneLine(logging.Filter):
    """Rewrites BentoML's ERROR record with traceback for a client error into one INFO line; server errors pass as they are."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        status = client_status(error)
        if status is None:
            return True
        path, method = record.args if isinstance(record.args, tuple) and len(record.args) == 2 else ("?", "?")
        record.msg, record.args = CLIENT_ERROR_LINE, (status, method, path, request_id(), reason(error))
        record.exc_info = record.exc_text = record.stack_info = None
        setattr(record, CLIENT_ERROR, True)
        record.levelno, record.levelname = logging.INFO, logging.getLevelName(logging.INFO)
        return logging.getLogger(record.name).isEnabledFor(logging.INFO)  # the level configured for INFO lines


class NoTraceOnClientErrors(logging.Filter):
    """On BentoML's handler, after its TraceRecordFilter: a client error's line without the trace suffix."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, CLIENT_ERROR, False):
            record.trace_msg = ""
        return True


def log_client_errors_in_one_line() -> None:
    """Install the filters (once per process, after BentoML configured the server's logging: in the worker)."""
    http_app = logging.getLogger(HTTP_APP_LOGGER)
    if not any(isinstance(existing, ClientErrorsInOneLine) for existing in http_app.filters):
        http_app.addFilter(ClientErrorsInOneLine())
    for handler in logging.getLogger("bentoml").handlers:  # BentoML's server handler (SERVER_LOGGING_CONFIG)
        if not any(isinstance(existing, NoTraceOnClientErrors) for existing in handler.filters):
            handler.addFilter(NoTraceOnClientErrors())
