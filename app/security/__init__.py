"""Abuse protection: rate limits, headers, verified identity, output handling, redaction, retention."""
