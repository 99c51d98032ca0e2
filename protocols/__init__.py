"""Pure wire formats of posd (sans-I/O): no asyncio, sockets, files or clock reads."""
