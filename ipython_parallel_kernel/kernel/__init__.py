"""The kernel process: engine, server and application."""
