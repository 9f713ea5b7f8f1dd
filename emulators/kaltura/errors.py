"""KalturaAPIException as the Kaltura server raises it (facts.md "Wire format").

The templates are the server's own (api_v3 ``KalturaErrors`` and the REACH plugin's
``KalturaReachErrors``): ``CODE;ARG_NAMES;message with @ARG@ placeholders``. An error carries
its code, the rendered message and the named args, and is sent with HTTP 200.
"""

from __future__ import annotations

# code → (argument names, message template)
TEMPLATES: dict[str, tuple[tuple[str, ...], str]] = {
    # api_v3 KalturaErrors
    "INTERNAL_SERVERL_ERROR": ((), "Internal server error occurred"),  # sic: Kaltura spells it so
    "MISSING_KS": ((), "Missing KS, session not established"),
    "INVALID_KS": (("KSID", "ERR_CODE", "ERR_DESC"), 'Invalid KS "@KSID@", Error "@ERR_CODE@,@ERR_DESC@"'),
    "SERVICE_NOT_SPECIFIED": ((), "Service name was not specified, please specify one"),
    "SERVICE_DOES_NOT_EXISTS": (("SRV_NAME",), 'Service "@SRV_NAME@" does not exists'),
    "ACTION_NOT_SPECIFIED": ((), "Action name was not specified, please specify one"),
    "ACTION_DOES_NOT_EXISTS": (
        ("ACTION_NAME", "SERVICE_NAME"),
        'Action "@ACTION_NAME@" does not exists for service "@SERVICE_NAME@"',
    ),
    "MISSING_MANDATORY_PARAMETER": (("PARAM_NAME",), 'Missing parameter "@PARAM_NAME@"'),
    "INVALID_OBJECT_TYPE": (("INVALID_OBJ_TYPE",), 'Invalid object type "@INVALID_OBJ_TYPE@"'),
    "OBJECT_TYPE_ABSTRACT": (
        ("OBJ_TYPE",),
        'The object type "@OBJ_TYPE@" is abstract, use one of the object implementations',
    ),
    "INVALID_ENUM_VALUE": (
        ("ENUM_VAL", "PARAM_NAME", "ENUM_TYPE"),
        'Invalid enumeration value "@ENUM_VAL@" for parameter "@PARAM_NAME@", expecting enumeration type "@ENUM_TYPE@"',
    ),
    "PROPERTY_VALIDATION_CANNOT_BE_NULL": (("PROP_NAME",), 'The property "@PROP_NAME@" cannot be null'),
    "PROPERTY_VALIDATION_NUMERIC_VALUE": (("PROP_NAME",), 'The property "@PROP_NAME@" must be numeric'),
    "PROPERTY_VALIDATION_NOT_UPDATABLE": (("PROP_NAME",), 'The property "@PROP_NAME@" cannot be updated'),
    "START_SESSION_ERROR": (("PID",), "Error while starting session for partner [@PID@]"),
    "SERVICE_FORBIDDEN": (("SERVICE",), "The access to service [@SERVICE@] is forbidden"),
    "INVALID_OBJECT_ID": (("ID",), "Invalid object id [@ID@]"),
    "SCHEDULE_EVENT_ID_NOT_FOUND": (("ID",), "Schedule Event id [@ID@] not found"),
    "FEATURE_NAME_NOT_FOUND": (("FEATURE_NAME",), "Feature name [@FEATURE_NAME@] not found"),
    "CANNOT_UPDATE_SCHEDULE_EVENT_FEATURE": (
        ("FEATURE_NAME",),
        "Cannot update schedule event feature [@FEATURE_NAME@]",
    ),
    "APP_TOKEN_ID_NOT_FOUND": (("ID",), 'Application token id "@ID@" not found'),
    "INVALID_APP_TOKEN_HASH": ((), "Invalid application token hash"),
    "INVALID_WIDGET_ID": (("ID",), "Invalid widget id [@ID@]"),
    "RESPONSE_PROFILE_NAME_NOT_FOUND": (("NAME",), "Response profile name [@NAME@] not found"),
    "RESPONSE_PROFILE_ID_NOT_FOUND": (("ID",), "Response profile id [@ID@] not found"),
    # REACH plugin KalturaReachErrors
    "CATALOG_ITEM_NOT_FOUND": (("ID",), "Catalog item with id provided not found [@ID@]"),
    "ENTRY_VENDOR_TASK_NOT_FOUND": (("ID",), "Entry vendor task item with id provided not found [@ID@]"),
    "ENTRY_VENDOR_TASK_ITEM_COULD_NOT_BE_UPDATED": (("REASON",), "@REASON@"),
    "CANNOT_UPDATE_STATUS_OF_TASK_WHICH_IS_IN_FINAL_STATE": (
        ("ID", "OLD_STATUS", "NEW_STATUS"),
        "Cannot update status from [@OLD_STATUS@] to [@NEW_STATUS@] for task with id [@ID@], "
        "since task is in final status",
    ),
    "CANNOT_EXTEND_ACCESS_KEY": ((), "Extending accessKey for non processing task is not allowed"),
}


class KalturaAPIError(Exception):
    """A KalturaAPIException: ``code``, rendered ``message`` and named ``args`` (all strings)."""

    def __init__(self, code: str, message: str, args: dict[str, str] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.args_map: dict[str, str] = dict(args or {})

    def to_dict(self) -> dict[str, object]:
        # The key order of the seed's ENTRY_VENDOR_TASK_NOT_FOUND example.
        return {"code": self.code, "message": self.message, "objectType": "KalturaAPIException", "args": self.args_map}


def api_error(code: str, *values: object) -> KalturaAPIError:
    """Build the error ``code`` from its server template, filling the args in order."""
    names, template = TEMPLATES.get(code, ((), code.replace("_", " ").capitalize()))
    args = {name: "" if value is None else str(value) for name, value in zip(names, values, strict=False)}
    message = template
    for name, value in args.items():
        message = message.replace(f"@{name}@", value)
    return KalturaAPIError(code, message, args)
