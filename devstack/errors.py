class StackError(RuntimeError):
    """A local-stack problem explained in one sentence for the user."""
