"""The local control socket.

- ``server``: length-prefixed frames on a Unix socket, one request at a time per
  connection, write methods only for callers allowed to write.
- ``peercred``: who the caller is (SO_PEERCRED) and what they may do.
- ``registry``: the method table, from every capability's ``methods`` module.
"""
