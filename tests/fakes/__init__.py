"""Local fakes of the vendors and receivers the hub talks to (ASGI apps, used through httpx transports)."""
