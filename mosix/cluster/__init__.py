"""The cluster transport both agent sides share.

Peers, authentication, framing, the node map, [cluster] settings, load vectors.
"""
