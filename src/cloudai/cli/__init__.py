"""The operator CLI: scriptable subcommands and the interactive master> shell."""
