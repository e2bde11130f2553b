"""Shipped board profiles (``*.toml``), loaded by ``agent.boards``."""
