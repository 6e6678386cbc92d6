"""Provider adapters: one module per wire format. No I/O here: adapters only read bytes."""
