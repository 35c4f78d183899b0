"""Typed errors of the model server; each carries the HTTP status it maps to.

The server turns a ServingError into `{"error": message}` with its status in one place
(training.serve.error_response); anything else is an unexpected failure: 500, logged once.
"""
from __future__ import annotations


class ServingError(Exception):
    """A request the server refuses; the message is shown to the caller as is."""

    status = 500


class BadRequest(ServingError):
    status = 400


class NotFound(ServingError):
    status = 404


class MethodNotAllowed(ServingError):
    status = 405

    def __init__(self, message: str, allow: str):
        super().__init__(message)
        self.allow = allow


class NotAcceptable(ServingError):
    status = 406


class RequestTimeout(ServingError):
    """The body did not arrive in time; the connection closes after the answer."""

    status = 408


class LengthRequired(ServingError):
    status = 411


class PayloadTooLarge(ServingError):
    status = 413


class UnsupportedMediaType(ServingError):
    status = 415


class PredictionFailed(ServingError):
    """The model answered something it cannot send (a non-finite prediction)."""

    status = 500
