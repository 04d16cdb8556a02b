"""The wake/sleep engine: turns user commands into events, using core for the math."""
