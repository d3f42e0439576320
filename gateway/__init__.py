"""SIP gateway that bridges phone calls to a GPT Realtime voice model."""

__version__ = "0.1.0"
