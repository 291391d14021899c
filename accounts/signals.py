"""Seams through which the upper app (devices) takes part in account operations without
accounts importing it."""

from django.dispatch import Signal

# Sent inside the deletion's transaction, with the user row locked: `user`, `now`.
user_deleted = Signal()
