"""What a user runs: the CLI, the daemon, the demo, support commands, health and metrics."""
