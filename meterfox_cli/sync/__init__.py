"""Direct sync from the providers' own usage and cost APIs (`meterfox sync`), and `reconcile`,
the comparison of what they billed with what the proxy recorded. The only package that calls an
admin API."""
