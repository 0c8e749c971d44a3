"""What runs in the ``rexec serve`` process: the accept path, logins, TLS, the pool's
arbiter and the status socket. Nothing here imports R (a test checks it)."""
