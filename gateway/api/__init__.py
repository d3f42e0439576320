"""The control API: your systems follow and act on live calls over HTTP (aiohttp, on the
gateway's own event loop), behind a bearer token.

``server`` is the HTTP shell (token, body limits, RFC 9457 errors), ``openapi`` the document
it serves and is checked against, ``controls`` what a route may ask of a call.
"""
