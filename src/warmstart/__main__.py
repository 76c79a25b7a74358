"""`python -m warmstart` is the `warmstart` command."""

from warmstart.cli import main

main()
