"""Per-call orchestration between the call leg and the Realtime session."""
