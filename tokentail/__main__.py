"""`python -m tokentail ...`, the same as the `tokentail` command."""

from tokentail.cli import main

main()
