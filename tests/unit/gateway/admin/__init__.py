"""gateway/admin/: the operator console's parts that need no server."""
