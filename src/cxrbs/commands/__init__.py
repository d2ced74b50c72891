"""What each ``cxrbs`` subcommand does, one function per command; ``cxrbs.cli`` only parses.

Each function receives the parsed options after ``cxrbs.commands.cli_checks`` accepted them, calls
the same package functions as the workflow, and returns the exit status.
"""
