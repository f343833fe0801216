"""Conversation endpoints for visitors: transcript, feedback and handoff."""
