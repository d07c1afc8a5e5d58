"""The remote side of the node agent: hosting processes whose home is elsewhere.

Receiving and restoring guests, and their checkpoints.
"""
