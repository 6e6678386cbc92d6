"""The cost of a recorded request, and where each price comes from.

One module per concern, imported by name (this package re-exports nothing):
`quote` (the Price, Bucket and Quote model and its JSON), `book` (PriceBook and the decision
chain provider-reported → override → computed → unpriced), `genai` (the genai-prices adapter),
`tariff` (the fast path for list prices), `price_data` (which genai-prices data is in use) and
`rate_cards` (the rates `meterfox prices` shows). Replicate's built-in prices live in
`meterfox_cli.replicate_prices`, below config, which checks hardware names against them.
"""
