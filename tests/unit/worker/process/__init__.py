"""worker/process/: the reaper and the webhook deliverer's retry delays."""
