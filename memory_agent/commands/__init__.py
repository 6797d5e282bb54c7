"""Command groups of the `memory-agent` CLI, one module each, composed in cli.py."""
