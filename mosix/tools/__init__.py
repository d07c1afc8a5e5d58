"""Command lines of the administration tools (migrate, mosps, mosq, ...)."""
