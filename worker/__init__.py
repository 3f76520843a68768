"""The arq worker: runs agents and appends their events to session streams."""
