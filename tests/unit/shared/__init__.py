"""What shared/ does, a room per room of it."""
