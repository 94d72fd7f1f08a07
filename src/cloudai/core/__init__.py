"""Pure domain code: no I/O, no asyncio, no protobuf."""
