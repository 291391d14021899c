"""Customer API: authentication-code issuance."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import services
from accounts.authentication import ApiKeyAuthentication, HasScope
from accounts.models import Scope
from portal.errors import ErrorCode
from portal.fields import TextField
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
    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [HasScope]
    throttle_classes = [ApiKeyThrottle]
    required_scopes: dict[str, str] = {}


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
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        issued = services.issue_auth_code(
            api_key=request.auth, external_id=data.validated_data["external_id"]
        )
        body = self.OutputSerializer(
            {
                "authentication_code": issued.code,
                "expires_at": issued.auth_code.expires_at,
                "expires_in": settings.AUTH_CODE_TTL_SECONDS,
                "user_id": issued.user_id,
                "existing_user": issued.existing_user,
            }
        ).data
        return Response(body, status=status.HTTP_200_OK)
