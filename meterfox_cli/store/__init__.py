"""SQLite storage: connections (`db`), the schema (`migrations`), the record ⇄ row mapping
(`rows`), the batched writer, and the read side: which requests (`select`), how grouped
(`dimensions`), their sums (`queries`), latency percentiles (`latency`), one by one (`feed`),
and their costs again (`costs`)."""
