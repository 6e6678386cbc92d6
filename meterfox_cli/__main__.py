"""`python -m meterfox_cli`: the same as the `meterfox` command."""

from meterfox_cli.cli import main

main()
