"""The cluster transport both agent sides share: peers, authentication, framing, the node map, load vectors."""
