"""Media: G.711, resampling, RTP packets, the RTP socket and pacer."""
