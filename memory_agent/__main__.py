"""`python -m memory_agent` is the `memory-agent` command."""

from memory_agent.cli import main

if __name__ == "__main__":
    main()
