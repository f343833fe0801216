"""Touchpoint events to webhooks: a durable outbox written with each touchpoint, signed and retried deliveries."""
