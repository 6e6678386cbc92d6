"""MeterFox CLI: a local proxy that records what every AI API call costs."""

__version__ = "0.1.0"
