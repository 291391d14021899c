"""The activation rule as a pure function, over every combination."""

import pytest

from devices.models import FormFactor, InactiveReason
from devices.policy import Decision, decide

PHONE, TABLET = FormFactor.PHONE, FormFactor.TABLET


@pytest.mark.parametrize(
    ("current", "incoming", "expected"),
    [
        (None, PHONE, Decision(activate_incoming=True, deactivate_current=False, reason=None)),
        (None, TABLET, Decision(activate_incoming=True, deactivate_current=False, reason=None)),
        (
            PHONE,
            PHONE,
            Decision(True, True, InactiveReason.REPLACED_BY_NEWER_DEVICE),
        ),
        (
            TABLET,
            PHONE,
            Decision(True, True, InactiveReason.REPLACED_BY_NEWER_DEVICE),
        ),
        (
            TABLET,
            TABLET,
            Decision(True, True, InactiveReason.REPLACED_BY_NEWER_DEVICE),
        ),
        (PHONE, TABLET, Decision(False, False, InactiveReason.PHONE_PREFERRED)),
    ],
)
def test_every_combination(current, incoming, expected):
    assert decide(current=current, incoming=incoming) == expected
