"""`python -m natsmesh.cli`: the command, for processes natsmesh starts itself (a domain's gate)."""

from natsmesh.cli import main

main()
