"""The local control socket: server, caller credentials, method registry."""
