"""The node agent mosixd as a whole: its configuration file, its start-up, and the composition of its parts."""
