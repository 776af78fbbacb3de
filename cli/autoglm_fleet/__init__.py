"""autoglm-fleet: the operators' CLI of the autoglm.fleet collection (docs/cli.md)."""

# Exit codes of every command.
EXIT_OK = 0
EXIT_FAILED = 1  # a host failed or was unreachable, or ansible-playbook stopped with an error
EXIT_USAGE = 2  # bad arguments, or what the command needs is missing (a playbook, an inventory, a module)
