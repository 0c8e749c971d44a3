"""The embedded R of a shell process: the only package that calls R's C API."""
