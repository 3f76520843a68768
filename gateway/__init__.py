"""The stateless HTTP gateway: REST to queue runs, SSE to tail session streams."""
