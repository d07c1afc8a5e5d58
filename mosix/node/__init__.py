"""The node agent mosixd as a whole.

Its configuration file, its start-up, and the composition of its parts.
"""
