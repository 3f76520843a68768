"""tokentail/'s public face: what `tokentail chat` prints, and where dev's balancer connects from."""
