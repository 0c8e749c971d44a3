"""Process management: a supervisor of pre-started R shells (fork or spawn)."""
