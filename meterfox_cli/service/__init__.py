"""`meterfox serve` as a per-user service: the systemd unit and launchd agent it runs as
(units), installing them with the machine's service manager (manager), asking a running daemon
how it is (probe), and its log file (logfile)."""
