"""Customer API on users (read, delete) and the SDK API (redeem, status, token, reset)."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured
from django.core.validators import RegexValidator
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import services as account_services
from accounts.api import CUSTOMER_ERRORS, CustomerApiView
from accounts.audit import Actor
from accounts.models import LinkedUser, Scope, UserStatus
from accounts.selectors import PUBLIC_ID
from devices import selectors, services
from devices.authentication import AccessTokenAuthentication, HasAccessToken
from devices.models import FormFactor, InactiveReason, Platform
from portal import context
from portal.authorization import Public, handled_methods
from portal.errors import DomainError, ErrorCode
from portal.fields import TextField
from portal.output import render, validated
from portal.schema import BODY_ERRORS, error_responses
from portal.throttling import ClientAddressThrottle


class DeviceOutput(serializers.Serializer):
    install_id = serializers.CharField()
    platform = serializers.ChoiceField(choices=Platform.choices)
    form_factor = serializers.ChoiceField(choices=FormFactor.choices)
    model = serializers.CharField()
    os_version = serializers.CharField()
    app_version = serializers.CharField()
    sdk_version = serializers.CharField()
    active = serializers.BooleanField(source="is_active")
    inactive_reason = serializers.ChoiceField(choices=InactiveReason.choices, allow_null=True)
    activated_at = serializers.DateTimeField(allow_null=True)
    deactivated_at = serializers.DateTimeField(allow_null=True)
    last_seen_at = serializers.DateTimeField()

    class Meta:
        ref_name = "Device"


class UserOutput(serializers.Serializer):
    user_id = serializers.CharField()
    external_id = serializers.CharField()
    status = serializers.ChoiceField(choices=UserStatus.choices)
    disabled = serializers.BooleanField(
        source="is_disabled",
        help_text=(
            "True while support (or the customer's console) has disabled the user: its codes "
            "and tokens are then refused with USER_DISABLED, whatever its status."
        ),
    )
    created_at = serializers.DateTimeField()
    devices = DeviceOutput(many=True)

    class Meta:
        ref_name = "User"


def _user_or_404(request: Request, *, live_only: bool = False, **lookup: str) -> LinkedUser:
    users = selectors.users_with_devices(app=request.auth.app).filter(**lookup)
    if live_only:
        users = users.exclude(status=UserStatus.DELETED)
    user = users.first()
    if user is None:
        raise DomainError(ErrorCode.USER_NOT_FOUND)
    return user


def _valid_user_id(user_id: str) -> str:
    if not PUBLIC_ID.match(user_id):
        raise DomainError(ErrorCode.USER_NOT_FOUND)
    return user_id


class UserDetailView(CustomerApiView):
    required_scopes = {"GET": Scope.USER_READ, "DELETE": Scope.USER_DELETE}

    class DeletionOutput(serializers.Serializer):
        request_id = serializers.CharField()

        class Meta:
            ref_name = "DeletionRequest"

    @extend_schema(
        operation_id="get_user",
        tags=["customer"],
        responses={200: UserOutput, **error_responses(ErrorCode.USER_NOT_FOUND, *CUSTOMER_ERRORS)},
        description="A user of the app with its devices (active first). Scope `user.read`.",
    )
    def get(self, request: Request, user_id: str) -> Response:
        user = _user_or_404(request, user_id=_valid_user_id(user_id))
        return Response(render(UserOutput, user))

    @extend_schema(
        operation_id="delete_user",
        tags=["customer"],
        responses={
            202: DeletionOutput,
            **error_responses(ErrorCode.USER_NOT_FOUND, *CUSTOMER_ERRORS),
        },
        description=(
            "Deletes the user: at once its devices become inactive (`USER_DELETED`), its codes "
            "and access tokens void; its data is purged in the background. Repeating the "
            "request answers 202 with the same request id. Scope `user.delete`."
        ),
    )
    def delete(self, request: Request, user_id: str) -> Response:
        deletion = account_services.delete_user_of_app(
            app_id=request.auth.app_id,
            user_id=_valid_user_id(user_id),
            actor=Actor.api_key(request.auth.key_id),
        )
        return Response(render(self.DeletionOutput, deletion), status=status.HTTP_202_ACCEPTED)


class UserLookupView(CustomerApiView):
    required_scopes = {"GET": Scope.USER_READ}

    class QuerySerializer(serializers.Serializer):
        external_id = TextField(min_length=1, max_length=256)

    @extend_schema(
        operation_id="find_user",
        tags=["customer"],
        # The serializer itself, so the schema states the limits the view enforces.
        parameters=[QuerySerializer],
        responses={
            200: UserOutput,
            **error_responses(
                ErrorCode.INVALID_REQUEST, ErrorCode.USER_NOT_FOUND, *CUSTOMER_ERRORS
            ),
        },
        description="The live (not deleted) user linked to an external id. Scope `user.read`.",
    )
    def get(self, request: Request) -> Response:
        query = self.QuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        user = _user_or_404(
            request, live_only=True, external_id=query.validated_data["external_id"]
        )
        return Response(render(UserOutput, user))


class SdkApiView(APIView):
    """Base of the /sdk/ views: throttled per client address, before authentication. It grants
    nothing by itself (the default permission refuses every request): a view inherits
    DeviceApiView for an access token, or declares its own permission_classes, else importing
    it fails. So a view that inherits this base instead of the device base cannot go unnoticed
    as an unauthenticated endpoint."""

    throttle_classes = [ClientAddressThrottle]

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        below_base = cls.__mro__[: cls.__mro__.index(SdkApiView)]
        if handled_methods(cls) and not any("permission_classes" in vars(k) for k in below_base):
            raise ImproperlyConfigured(
                f"{cls.__module__}.{cls.__qualname__} declares no permission_classes: inherit "
                "DeviceApiView (access token), or declare them and say why."
            )

    def perform_authentication(self, request: Request) -> None:
        # Throttled before authenticating, so that guessing tokens counts against the limit.
        super().check_throttles(request)
        super().perform_authentication(request)

    def check_throttles(self, request: Request) -> None:
        """Already done, before authentication."""


class RedeemView(SdkApiView):
    # Public: the device has no credential yet; the authentication code in the body is the
    # credential, and the redemption service checks it (single use, app, expiry). Guessing
    # codes is limited by the per-address throttle, which runs first.
    authentication_classes = []
    permission_classes = [Public]

    class InputSerializer(serializers.Serializer):
        class DeviceInput(serializers.Serializer):
            install_id = TextField(
                validators=[
                    RegexValidator(r"^[A-Za-z0-9_-]{8,64}\Z", "must be 8 to 64 of [A-Za-z0-9_-]")
                ]
            )
            platform = serializers.ChoiceField(choices=Platform.choices)
            form_factor = serializers.ChoiceField(choices=FormFactor.choices)
            model = TextField(max_length=128, required=False, allow_blank=True)
            os_version = TextField(max_length=128, required=False, allow_blank=True)
            app_version = TextField(max_length=128, required=False, allow_blank=True)
            sdk_version = TextField(max_length=128, required=False, allow_blank=True)

            class Meta:
                ref_name = "DeviceRegistration"

        authentication_code = TextField(max_length=128)
        app_id = TextField(max_length=64)
        device = DeviceInput()

        class Meta:
            ref_name = "Redemption"

    class OutputSerializer(serializers.Serializer):
        user_id = serializers.CharField()
        restored = serializers.BooleanField(
            help_text="True when the user already had a device before this redemption."
        )
        device = DeviceOutput()
        access_token = serializers.CharField(help_text="Shown only here.")
        access_token_expires_at = serializers.DateTimeField()
        config = serializers.JSONField(help_text="The app's SDK configuration, as stored.")

        class Meta:
            ref_name = "RedemptionResult"

    @extend_schema(
        operation_id="redeem_auth_code",
        tags=["sdk"],
        auth=[],
        request=InputSerializer,
        responses={
            201: OutputSerializer,
            200: OutputSerializer,
            **error_responses(
                *BODY_ERRORS,
                ErrorCode.INVALID_AUTH_CODE,
                ErrorCode.USER_DISABLED,
                ErrorCode.APP_DISABLED,
                ErrorCode.AUTH_CODE_ALREADY_USED,
                ErrorCode.INSTALL_ID_CONFLICT,
                ErrorCode.AUTH_CODE_EXPIRED,
            ),
        },
        description=(
            "Redeems an authentication code on a device: creates or restores the user and "
            "applies the activation policy (newest device wins; an active phone keeps its "
            "place against a tablet). 201 on redemption; 200 when the same install retries "
            "with the same code within its lifetime (a fresh access token)."
        ),
    )
    def post(self, request: Request) -> Response:
        data = validated(self.InputSerializer, request.data)
        if PUBLIC_ID.match(data["app_id"]):
            context.tag_request(app_id=data["app_id"])
        redemption = services.redeem_auth_code(
            code=data["authentication_code"],
            app_id=data["app_id"],
            device=services.DeviceInfo(**data["device"]),
        )
        device = redemption.device
        body = render(
            self.OutputSerializer,
            {
                "user_id": redemption.user.user_id,
                "restored": redemption.restored,
                "device": device,
                "access_token": redemption.access_token,
                "access_token_expires_at": device.access_token_expires_at,
                "config": redemption.user.app.sdk_config,
            },
        )
        return Response(body, status=status.HTTP_200_OK if redemption.retried else 201)


TOKEN_ERRORS = (ErrorCode.INVALID_ACCESS_TOKEN, ErrorCode.USER_DISABLED, ErrorCode.APP_DISABLED)


class DeviceApiView(SdkApiView):
    """Base of the SDK calls a device makes with its access token."""

    authentication_classes = [AccessTokenAuthentication]
    permission_classes = [HasAccessToken]


class StatusView(DeviceApiView):
    class OutputSerializer(serializers.Serializer):
        user_id = serializers.CharField(source="user.user_id")
        device = DeviceOutput(source="*")
        config = serializers.JSONField(source="app.sdk_config")

        class Meta:
            ref_name = "DeviceStatus"

    @extend_schema(
        operation_id="sdk_status",
        tags=["sdk"],
        responses={200: OutputSerializer, **error_responses(*TOKEN_ERRORS)},
        description=(
            "The device's state and the app's SDK configuration. Works for an inactive device "
            "too: that is how the SDK learns it was replaced (see `inactive_reason`)."
        ),
    )
    def get(self, request: Request) -> Response:
        device = request.auth
        device.last_seen_at = services.record_device_seen(device=device)
        return Response(render(self.OutputSerializer, device))


class TokenView(DeviceApiView):
    class OutputSerializer(serializers.Serializer):
        access_token = serializers.CharField()
        access_token_expires_at = serializers.DateTimeField()

        class Meta:
            ref_name = "AccessToken"

    @extend_schema(
        operation_id="sdk_refresh_token",
        tags=["sdk"],
        request=None,
        responses={200: OutputSerializer, **error_responses(*TOKEN_ERRORS)},
        description="A new access token; the one used for this call is void from now on.",
    )
    def post(self, request: Request) -> Response:
        new = services.refresh_access_token(device=request.auth)
        return Response(
            render(
                self.OutputSerializer,
                {"access_token": new.token, "access_token_expires_at": new.expires_at},
            )
        )


class ResetView(DeviceApiView):
    @extend_schema(
        operation_id="sdk_reset",
        tags=["sdk"],
        request=None,
        responses={204: None, **error_responses(*TOKEN_ERRORS)},
        description=(
            "Logs the SDK out: this device becomes inactive (`RESET`) and its token void; the "
            "user and its other devices are untouched."
        ),
    )
    def post(self, request: Request) -> Response:
        services.reset_device(device=request.auth)
        return Response(status=status.HTTP_204_NO_CONTENT)
