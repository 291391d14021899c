"""Customer API: authentication-code issuance and the status of a deletion."""

from __future__ import annotations

from typing import Literal

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import selectors, services
from accounts.authentication import ApiKeyAuthentication, HasScope, named_scopes
from accounts.models import DeletionRequest, DeletionStatus, Scope
from portal.authorization import handled_methods
from portal.errors import ErrorCode
from portal.fields import TextField
from portal.output import render, validated
from portal.schema import BODY_ERRORS, error_responses
from portal.throttling import ApiKeyThrottle

CUSTOMER_ERRORS = (
    ErrorCode.INVALID_API_KEY,
    ErrorCode.API_KEY_EXPIRED,
    ErrorCode.API_KEY_REVOKED,
    ErrorCode.INSUFFICIENT_SCOPE,
    ErrorCode.APP_DISABLED,
)


class CustomerApiView(APIView):
    """Base of the customer endpoints: an API key holding the scope the view names, in
    `required_scopes` (one, or a tuple of which any grants), for each method it handles. A
    class that handles a method without naming its scope fails at import, so the mistake stops
    the process from starting instead of opening the endpoint to every key (or refusing every
    key) in production."""

    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [HasScope]
    throttle_classes = [ApiKeyThrottle]
    required_scopes: dict[str, str | tuple[str, ...]] = {}

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        unnamed = handled_methods(cls) - cls.required_scopes.keys()
        if unnamed:
            raise ImproperlyConfigured(
                f"{cls.__module__}.{cls.__qualname__} handles {', '.join(sorted(unnamed))} but "
                "names no scope for it: add it to required_scopes."
            )
        named = {scope for each in cls.required_scopes.values() for scope in named_scopes(each)}
        unknown = named - set(Scope)
        if unknown:
            raise ImproperlyConfigured(
                f"{cls.__module__}.{cls.__qualname__} requires unknown scopes "
                f"{sorted(unknown)}; the scopes are {sorted(Scope.values)}."
            )


class AuthCodeView(CustomerApiView):
    required_scopes = {"POST": Scope.USER_LINK}

    class InputSerializer(serializers.Serializer):
        external_id = TextField(
            min_length=1, max_length=256, help_text="The customer's own id of its user."
        )

        class Meta:
            ref_name = "AuthCodeRequest"

    class OutputSerializer(serializers.Serializer):
        authentication_code = serializers.CharField(help_text="Single use; shown only here.")
        expires_at = serializers.DateTimeField()
        expires_in = serializers.IntegerField(help_text="Seconds until expires_at.")
        user_id = serializers.CharField()
        existing_user = serializers.BooleanField(
            help_text="True when the external id was already linked (user restoration)."
        )

        class Meta:
            ref_name = "AuthCode"

    @extend_schema(
        operation_id="issue_auth_code",
        tags=["customer"],
        request=InputSerializer,
        responses={
            200: OutputSerializer,
            **error_responses(*BODY_ERRORS, ErrorCode.USER_DISABLED, *CUSTOMER_ERRORS),
        },
        description=(
            "Issues a short-lived, single-use authentication code for the external id. The "
            "first code creates the user (status `pending`); later ones restore it."
        ),
    )
    def post(self, request: Request) -> Response:
        data = validated(self.InputSerializer, request.data)
        issued = services.issue_auth_code(api_key=request.auth, external_id=data["external_id"])
        body = render(
            self.OutputSerializer,
            {
                "authentication_code": issued.code,
                "expires_at": issued.expires_at,
                "expires_in": settings.AUTH_CODE_TTL_SECONDS,
                "user_id": issued.user_id,
                "existing_user": issued.existing_user,
            },
        )
        return Response(body, status=status.HTTP_200_OK)


class DeletionStatusView(CustomerApiView):
    """Whether a deletion the app asked for is done: the answer a customer owes its own user."""

    required_scopes = {"GET": (Scope.USER_DELETE, Scope.USER_READ)}

    class OutputSerializer(serializers.Serializer):
        request_id = serializers.CharField()
        user_id = serializers.CharField(source="deleted_user_id")
        status = serializers.SerializerMethodField()
        requested_at = serializers.DateTimeField()
        completed_at = serializers.DateTimeField(allow_null=True)

        class Meta:
            ref_name = "DeletionStatus"

        def get_status(self, deletion: DeletionRequest) -> Literal["pending", "completed"]:
            return "completed" if deletion.status == DeletionStatus.DONE else "pending"

    @extend_schema(
        operation_id="get_deletion",
        tags=["customer"],
        responses={200: OutputSerializer, **error_responses(ErrorCode.NOT_FOUND, *CUSTOMER_ERRORS)},
        description=(
            "The status of a deletion requested by `DELETE /users/{user_id}`: `pending` until "
            "the user's data is purged, then `completed`. Scope `user.delete` or `user.read`."
        ),
    )
    def get(self, request: Request, request_id: str) -> Response:
        deletion = selectors.deletion_of_app(app_id=request.auth.app_id, request_id=request_id)
        return Response(render(self.OutputSerializer, deletion))
