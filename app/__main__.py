"""`python -m app` runs the journey command line."""

from app.cli import main

main()
