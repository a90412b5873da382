"""The command line's shared parts and its measuring commands (backend/cli.py registers them)."""
