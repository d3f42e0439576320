"""The embedded agent: a local Realtime server (GA protocol, server side) that is an echo test line.

It is a real WebSocket server on loopback, so the gateway's exact client code path runs with no
Azure account, and it is the faithful fake the tests use. What it does, as telephony people know
an echo test: it finds the caller's turns with an energy VAD (:mod:`gateway.media.vad`) and
answers each turn by playing the caller's own words back. A ``response.create`` with no caller
turn to answer (the greeting) plays a short two-tone chime.

What it speaks, as the service does (REALTIME_PROTOCOL.md):

* handshake: ``/openai/v1/realtime?model=<deployment>`` (also ``/v1/realtime``), ``api-key`` or
  ``Authorization: Bearer`` when a key is set, Azure-like JSON bodies on 400/401/403/404/429;
* ``session.created`` on connect, partial ``session.update`` with validation and
  ``session.updated`` (full effective session); unknown session keys are refused like the
  service does (``unknown_parameter``);
* input in ``audio/pcm`` (24 kHz) or ``audio/pcmu``/``audio/pcma`` (8 kHz), VAD turns
  (``speech_started``/``speech_stopped``/``committed``, user item added/done), responses whose
  audio arrives in 100 ms deltas at ``burst_speed`` x real time, barge-in cancellation
  (``turn_detected``), ``response.cancel``, ``conversation.item.truncate``, manual
  commit/clear, ``conversation.item.create/delete/retrieve``, errors for everything it refuses;
* ``max_session_s``: close code 1001, as the service does at its session limit.

Bad input never closes the session and never takes the server down: it gets an ``error`` event.
The preview dialect (Azure ``/openai/realtime?api-version=...&deployment=...``, or
``/v1/realtime`` with ``OpenAI-Beta: realtime=v1``) is spoken by translating at the edges of a
session. Tests can drop a session mid-call (:meth:`EmbeddedSession.drop`: close code 1011, or
1006 for a socket that just dies).

Not modelled: tools (a function call is made only when a test scripts one), input
transcription (a placeholder transcript is sent when transcription is configured),
``idle_timeout_ms``.

Modules, lowest first (each imports only those before it): ``audio`` (formats, input ring,
G.711 and resampling via :mod:`gateway.media.resample`, the chime), ``schema`` (client event
checks, ``session.update`` merge), ``preview`` (the preview dialect as a translation),
``conversation`` and ``responses`` (items; one answer's events), ``session`` (the protocol
state machine, no I/O), ``server`` (the websockets shell).
"""

from .audio import chime
from .responses import CHIME_TRANSCRIPT, ECHO_TRANSCRIPT
from .schema import InvalidRequest, default_session, merge_session
from .server import EmbeddedRealtimeServer, EmbeddedSession
from .session import AgentSession

__all__ = [
    "CHIME_TRANSCRIPT",
    "ECHO_TRANSCRIPT",
    "AgentSession",
    "EmbeddedRealtimeServer",
    "EmbeddedSession",
    "InvalidRequest",
    "chime",
    "default_session",
    "merge_session",
]
