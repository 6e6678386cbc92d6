"""Keys: provider keys in the OS keyring (or an encrypted file), revocable proxy keys minted
for apps (stored as a hash), per-key budgets, and the proxy's Authorizer that ties them together.
"""
