"""The compute node: a QAP1 (Rserve-compatible) server on top of the pool."""
