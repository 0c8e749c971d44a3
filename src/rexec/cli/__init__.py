"""The ``rexec`` command line."""
