"""Rendering what the store reads, for people and for machines: `table` (rich and Markdown),
`formats` (JSON, CSV), `chart`, `tail`, `export`, `cells` (numbers for people) and `empty`
(what to say before anything is recorded). The Console is injected, so tests read exactly what
a person would see; machine formats never carry colour codes and keep every number exact."""
