"""Signalling: a thin adapter over aiosipua plus our conformance fixes."""
