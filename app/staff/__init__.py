"""Staff workspace: tokens, transcripts, corrections, curated answers, analytics, export, erasure."""
