"""The proxy core: aiohttp server, forwarding, stream tapping. Knows nothing of click or rich."""
