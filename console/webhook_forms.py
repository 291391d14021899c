"""Forms of the Webhooks page. They check the shape of the input for clear messages; the URL
rules (https, no private address, at most 5 endpoints) stay with events.services, whose
refusals the views show on the same form."""

from __future__ import annotations

from typing import Any

from django import forms

from accounts.lifecycle import EventType


class EndpointForm(forms.Form):
    url = forms.URLField(
        max_length=2000,
        assume_scheme="https",
        widget=forms.URLInput(attrs={"size": 70}),
        label="URL",
        help_text="Where the events are POSTed: https, on a public address.",
    )
    all_events = forms.BooleanField(
        required=False,
        initial=True,
        label="All event types",
        help_text="Including those added later. Untick to choose below.",
    )
    events = forms.MultipleChoiceField(
        choices=[(name, name) for name in EventType.values],
        widget=forms.CheckboxSelectMultiple,
        required=False,
        label="Event types",
        help_text="As named in the events' payload (docs/WEBHOOKS.md).",
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if not data.get("all_events") and not data.get("events"):
            raise forms.ValidationError("Tick “All event types” or at least one event type.")
        return data

    def event_types(self) -> list[str]:
        """What the services take: empty means every type."""
        data = self.cleaned_data
        return [] if data["all_events"] else list(data["events"])
