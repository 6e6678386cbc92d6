from meterfox_cli.cli import main

main()
