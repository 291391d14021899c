"""The device activation rule, as a pure function: no ORM, no clock.

A user has at most one active device. The newest device wins, except that a tablet never
takes the place of an active phone: the phone stays active and the tablet waits, inactive.
"""

from __future__ import annotations

from dataclasses import dataclass

from devices.models import FormFactor, InactiveReason


@dataclass(frozen=True)
class Decision:
    activate_incoming: bool
    """Whether the redeeming device becomes the user's active device."""
    deactivate_current: bool
    """Whether the user's currently active (other) device loses its place."""
    reason: InactiveReason | None
    """Why the device that ends up inactive is inactive: the incoming one when it is not
    activated, otherwise the current one when it is deactivated."""


def decide(*, current: FormFactor | None, incoming: FormFactor) -> Decision:
    """`current` is the form factor of the user's active device other than the incoming one
    (None when there is none)."""
    if current is None:
        return Decision(activate_incoming=True, deactivate_current=False, reason=None)
    if incoming == FormFactor.TABLET and current == FormFactor.PHONE:
        return Decision(
            activate_incoming=False,
            deactivate_current=False,
            reason=InactiveReason.PHONE_PREFERRED,
        )
    return Decision(
        activate_incoming=True,
        deactivate_current=True,
        reason=InactiveReason.REPLACED_BY_NEWER_DEVICE,
    )
