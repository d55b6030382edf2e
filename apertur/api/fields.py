"""Serializer fields shared by the API's request bodies."""

from rest_framework import serializers


class StrictCharField(serializers.CharField):
    """A CharField that refuses numbers instead of turning them into strings (DRF's CharField accepts 1 as "1"): a
    JSON body's string field takes a JSON string, as the OpenAPI schema says (docs/api.md "OpenAPI")."""

    def to_internal_value(self, data) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    """A BooleanField that takes only JSON `true` and `false` (DRF's also takes "yes", "on", 1 and "1"), as the
    OpenAPI schema says (docs/api.md "OpenAPI")."""

    def to_internal_value(self, data) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid")
        return data
