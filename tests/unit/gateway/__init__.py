"""The gateway's tests, a room per room of gateway/; here, gateway/protocol.py's direct body write."""
