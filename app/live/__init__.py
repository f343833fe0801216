"""Live handoff: a staff member takes over a visitor's conversation in real time (docs/live-handoff.md)."""
