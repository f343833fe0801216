"""An OpenAI-compatible chat completions API over the journey guide, with journey metadata in an extra field."""
