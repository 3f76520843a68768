"""gateway/protocols/: the table of cases all protocols play, the UI protocols; a room per protocol."""
