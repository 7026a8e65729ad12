"""The app started as a public Space and attacked by its visitors, strangers and members (attacks.py)."""
