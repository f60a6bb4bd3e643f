"""State in Redis: the store, its key layout and Lua scripts, the outbox, the shared KPI answer."""
