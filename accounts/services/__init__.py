"""Every write on apps, keys, users and codes, one module per subject. Views, admin, commands
and tasks call these (`from accounts import services`; `services.create_api_key(...)`).

Each refusal is a `portal.errors.DomainError`. A rule that decides whether an action may be
taken lives in a `check_*` function beside its service: the service applies it under its lock,
and the admin calls the same function to offer the action, or to say why it cannot."""

from accounts.services.activity import roll_up_activity
from accounts.services.apps import (
    MAX_SDK_CONFIG_BYTES,
    check_sdk_config,
    create_app,
    sdk_config_size,
    set_sdk_config,
    update_app,
)
from accounts.services.codes import IssuedCode, SweepResult, issue_auth_code, sweep_auth_codes
from accounts.services.keys import (
    MAX_KEY_LIFETIME_DAYS,
    MAX_ROTATION_GRACE,
    NewApiKey,
    Rotation,
    check_revocable,
    check_rotatable,
    create_api_key,
    parse_scopes,
    record_api_key_use,
    revoke_api_key,
    rotate_api_key,
    send_key_expiry_notices,
)
from accounts.services.users import (
    check_deletable,
    check_disable,
    delete_user_of_app,
    pending_deletions,
    purge_deleted_user,
    request_user_deletion,
    set_user_disabled,
)

__all__ = [
    "MAX_KEY_LIFETIME_DAYS",
    "MAX_ROTATION_GRACE",
    "MAX_SDK_CONFIG_BYTES",
    "IssuedCode",
    "NewApiKey",
    "Rotation",
    "SweepResult",
    "check_deletable",
    "check_disable",
    "check_revocable",
    "check_rotatable",
    "check_sdk_config",
    "create_api_key",
    "create_app",
    "delete_user_of_app",
    "issue_auth_code",
    "parse_scopes",
    "pending_deletions",
    "purge_deleted_user",
    "record_api_key_use",
    "request_user_deletion",
    "revoke_api_key",
    "roll_up_activity",
    "rotate_api_key",
    "sdk_config_size",
    "send_key_expiry_notices",
    "set_sdk_config",
    "set_user_disabled",
    "sweep_auth_codes",
    "update_app",
]
