"""What the tests share: one wait helper (waiting), one C-build helper (cbuild), and the
fixtures, registered as pytest plugins by tests/conftest.py (agents, users, clusters,
loopback_agents), so a test module names a fixture as a parameter and imports nothing."""
