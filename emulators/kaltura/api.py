"""The Kaltura API actions the REACH live lifecycle uses (seed + facts.md "Calls and permissions").

Checks run in the server's order: service and action exist → KS (MISSING_KS / INVALID_KS) →
the KS kind may use the action (SERVICE_FORBIDDEN) → mandatory parameters → the action's rules.
``dispatch`` returns the result object and the kind of KS used (for the call records).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable
from typing import Any

from emulators.kaltura.errors import KalturaAPIError, api_error
from emulators.kaltura.model import (
    ABORTED,
    FEATURE_UPDATABLE,
    FINAL,
    PENDING,
    PROCESSING,
    SCHEDULED,
    STARTABLE,
    Task,
)
from emulators.kaltura.sessions import ADMIN, Session
from emulators.kaltura.state import STATUS_NAMES, KalturaState
from emulators.kaltura.wire import NULL

VENDOR = frozenset({"vendor"})
ACCESS_KEY = frozenset({"access_key"})
ANY = frozenset({"vendor", "vendor_user", "widget", "access_key"})
VENDOR_SETTABLE = {"status": int, "errDescription": str, "accuracy": int, "outputObjectId": str, "externalTaskId": str}
# getJobs: the server forces the status filter to PENDING and/or SCHEDULED (facts.md).
JOB_STATUSES = frozenset({PENDING, SCHEDULED})
APP_TOKEN_HASHES = {"SHA1": hashlib.sha1, "MD5": hashlib.md5, "SHA256": hashlib.sha256, "SHA512": hashlib.sha512}

Handler = Callable[[KalturaState, "Session | None", dict[str, Any]], Any]


def _missing(params: dict[str, Any], *names: str) -> None:
    for name in names:
        value = params.get(name)
        if value is None or value is NULL or value == "":
            raise api_error("MISSING_MANDATORY_PARAMETER", name)


def _as_int(value: Any, default: int | None = None) -> int | None:
    if value is None or value is NULL or value == "":
        return default
    try:
        return int(str(value).strip())
    except ValueError:
        return default


# ----------------------------------------------------------------------------- session / apptoken


def session_start(state: KalturaState, _s: Session | None, p: dict[str, Any]) -> str:
    _missing(p, "secret")
    partner_id = _as_int(p.get("partnerId"))
    if partner_id != state.partner_id or not hmac.compare_digest(str(p["secret"]), state.admin_secret):
        raise api_error("START_SESSION_ERROR", p.get("partnerId", ""))
    session_type = _as_int(p.get("type"), 0)
    expiry = min(_as_int(p.get("expiry"), 86400) or 86400, state.ks_expiry_seconds)
    kind = "vendor" if session_type == ADMIN else "vendor_user"
    privileges = "" if p.get("privileges") in (None, NULL) else str(p["privileges"])
    user_id = "" if p.get("userId") in (None, NULL) else str(p["userId"])
    return state.sessions.issue(
        kind, partner_id, state.now() + expiry, session_type=session_type or 0, user_id=user_id, privileges=privileges
    ).ks


def session_start_widget(state: KalturaState, _s: Session | None, p: dict[str, Any]) -> dict[str, Any]:
    _missing(p, "widgetId")
    if str(p["widgetId"]) != f"_{state.partner_id}":
        raise api_error("INVALID_WIDGET_ID", p["widgetId"])
    expiry = min(_as_int(p.get("expiry"), 86400) or 86400, state.ks_expiry_seconds)
    session = state.sessions.issue(
        "widget", state.partner_id, state.now() + expiry, session_type=0, privileges="view:*,widget:1"
    )
    return {"partnerId": state.partner_id, "ks": session.ks, "userId": "0",
            "objectType": "KalturaStartWidgetSessionResponse"}  # fmt: skip


def session_get(state: KalturaState, session: Session | None, p: dict[str, Any]) -> dict[str, Any]:
    target = session
    if p.get("session") not in (None, NULL, ""):
        target = state.sessions.validate(str(p["session"]), state.clock())
    assert target is not None
    return target.info()


def app_token_start(state: KalturaState, session: Session | None, p: dict[str, Any]) -> dict[str, Any]:
    """appToken.startSession(id, tokenHash): tokenHash = hash(KS of this call + token value)."""
    _missing(p, "id", "tokenHash")
    assert session is not None
    token_id = str(p["id"])
    token = state.app_tokens.get(token_id)
    if token is None or session.partner_id != state.partner_id:
        raise api_error("APP_TOKEN_ID_NOT_FOUND", token_id)
    # A token value may name its hash type ("SHA1:value"); Kaltura's default is SHA256.
    hash_type, value = "SHA256", token
    prefix, sep, rest = token.partition(":")
    if sep and prefix.upper() in APP_TOKEN_HASHES:
        hash_type, value = prefix.upper(), rest
    algo = APP_TOKEN_HASHES[hash_type]
    expected = algo((session.ks + value).encode()).hexdigest()
    if not hmac.compare_digest(expected, str(p["tokenHash"]).lower()):
        raise api_error("INVALID_APP_TOKEN_HASH")
    expiry = min(_as_int(p.get("expiry"), state.ks_expiry_seconds) or state.ks_expiry_seconds, state.ks_expiry_seconds)
    user_id = "" if p.get("userId") in (None, NULL) else str(p["userId"])
    new = state.sessions.issue("vendor", state.partner_id, state.now() + expiry, session_type=ADMIN, user_id=user_id)
    return new.info()


# ----------------------------------------------------------------------------- reach_entryvendortask


def _profile_name(state: KalturaState, p: dict[str, Any]) -> str | None:
    """The response profile asked for (the official client keeps it between calls: facts.md)."""
    holder = p.get("responseProfile")
    if not isinstance(holder, dict):
        return None
    name = holder.get("systemName")
    if name not in (None, NULL, ""):
        if name != "reach_vendor":
            raise api_error("RESPONSE_PROFILE_NAME_NOT_FOUND", name)
        return "reach_vendor"
    if holder.get("id") not in (None, NULL, ""):
        raise api_error("RESPONSE_PROFILE_ID_NOT_FOUND", holder["id"])
    return None


def render_task(state: KalturaState, task: Task, p: dict[str, Any]) -> dict[str, Any]:
    if _profile_name(state, p) == "reach_vendor":
        return task.render_reach_vendor(state.catalog[task.catalog_item_id], state.profiles[task.reach_profile_id])
    return task.render()


def _check_object_type(obj: dict[str, Any], allowed: set[str], declared: str, abstract: bool = False) -> None:
    kind = obj.get("objectType")
    if kind in (None, NULL, ""):
        if abstract:
            raise api_error("OBJECT_TYPE_ABSTRACT", declared)
        return
    if kind == declared and abstract:
        raise api_error("OBJECT_TYPE_ABSTRACT", declared)
    if kind not in allowed:
        raise api_error("INVALID_OBJECT_TYPE", kind)


def _statuses(value: Any) -> set[int]:
    out = set()
    for part in str(value).split(","):
        number = _as_int(part)
        out.add(number if number in JOB_STATUSES else PENDING)
    return out


def _matches(task: dict[str, Any], flt: dict[str, Any]) -> bool:
    for key, value in flt.items():
        if value is NULL or value == "" or key in ("objectType", "orderBy", "statusEqual", "statusIn"):
            continue
        for suffix, test in (
            ("Equal", lambda a, b: str(a) == b),
            ("In", lambda a, b: str(a) in {x.strip() for x in b.split(",")}),
            ("GreaterThanOrEqual", lambda a, b: _as_int(a, 0) >= (_as_int(b, 0) or 0)),
            ("LessThanOrEqual", lambda a, b: _as_int(a, 0) <= (_as_int(b, 0) or 0)),
        ):
            if key.endswith(suffix) and not key.endswith("NotIn"):
                name = key[: -len(suffix)]
                if name in task and not test(task[name], str(value)):
                    return False
                break
    return True


def get_jobs(state: KalturaState, session: Session | None, p: dict[str, Any]) -> dict[str, Any]:
    assert session is not None
    flt = p.get("filter") if isinstance(p.get("filter"), dict) else {}
    if flt:
        kind = flt.get("objectType")
        if kind not in (None, NULL, "") and not ("EntryVendorTask" in str(kind) and "Filter" in str(kind)):
            raise api_error("INVALID_OBJECT_TYPE", kind)
    wanted = {PENDING}
    if flt.get("statusEqual") not in (None, NULL, "") or flt.get("statusIn") not in (None, NULL, ""):
        wanted = JOB_STATUSES
        if flt.get("statusEqual") not in (None, NULL, ""):
            wanted = wanted & _statuses(flt["statusEqual"])
        if flt.get("statusIn") not in (None, NULL, ""):
            wanted = wanted & _statuses(flt["statusIn"])
    # The server forces vendorPartnerIdEqual to the KS partner.
    rows = [t for t in state.tasks.values() if t.vendor_partner_id == session.partner_id and t.status in wanted]
    rows = [t for t in rows if _matches(t.render(), {k: v for k, v in flt.items() if k != "vendorPartnerIdEqual"})]
    order = str(flt.get("orderBy") or "+createdAt")
    key = order.lstrip("+-") or "createdAt"
    rows.sort(key=lambda t: (_as_int(t.render().get(key), 0), int(t.id)), reverse=order.startswith("-"))
    pager = p.get("pager") if isinstance(p.get("pager"), dict) else {}
    size = _as_int(pager.get("pageSize"), 30) or 30
    size = 30 if size <= 0 else min(size, 500)
    index = max(1, _as_int(pager.get("pageIndex"), 1) or 1)
    page = rows[(index - 1) * size : index * size]
    return {
        "totalCount": len(rows),
        "objects": [render_task(state, t, p) for t in page],
        "objectType": "KalturaEntryVendorTaskListResponse",
    }


def _visible_to_key(state: KalturaState, session: Session, partner_id: int, task_id: str | None, event_id: int | None):
    if partner_id != session.partner_id:
        return False
    if state.access_key_scope == "partner":
        return True
    own_task = task_id is not None and task_id == session.task_id
    return own_task or (event_id is not None and event_id == session.event_id)


def task_get(state: KalturaState, session: Session | None, p: dict[str, Any]) -> dict[str, Any]:
    _missing(p, "id")
    assert session is not None
    task = state.task_for(p["id"])
    if not _visible_to_key(state, session, task.partner_id, task.id, None):
        raise api_error("ENTRY_VENDOR_TASK_NOT_FOUND", p["id"])
    return render_task(state, task, p)


def _vendor_task(state: KalturaState, session: Session, task_id: Any) -> Task:
    task = state.task_for(task_id)
    if task.vendor_partner_id != session.partner_id:  # retrieveByPKAndVendorPartnerId
        raise api_error("ENTRY_VENDOR_TASK_NOT_FOUND", task_id)
    return task


def update_job(state: KalturaState, session: Session | None, p: dict[str, Any]) -> dict[str, Any]:
    _missing(p, "id", "entryVendorTask")
    assert session is not None
    body = p["entryVendorTask"]
    if not isinstance(body, dict):
        raise api_error("MISSING_MANDATORY_PARAMETER", "entryVendorTask")
    _check_object_type(body, {"KalturaEntryVendorTask"}, "KalturaEntryVendorTask")
    task = _vendor_task(state, session, p["id"])
    changes: dict[str, Any] = {}
    for name, value in body.items():
        if name == "objectType":
            continue
        if name not in VENDOR_SETTABLE:
            raise api_error("PROPERTY_VALIDATION_NOT_UPDATABLE", name)
        if value is NULL:
            if name == "status":
                raise api_error("PROPERTY_VALIDATION_CANNOT_BE_NULL", name)
            changes[name] = None
        elif VENDOR_SETTABLE[name] is int:
            number = _as_int(value)
            if number is None or (name == "status" and number not in STATUS_NAMES):
                if name == "status":
                    raise api_error("INVALID_ENUM_VALUE", value, "status", "KalturaEntryVendorTaskStatus")
                raise api_error("PROPERTY_VALIDATION_NUMERIC_VALUE", name)
            changes[name] = number
        else:
            changes[name] = str(value)
    new_status = changes.get("status")
    if new_status is not None and new_status != task.status:
        if task.status in FINAL:
            raise api_error("CANNOT_UPDATE_STATUS_OF_TASK_WHICH_IS_IN_FINAL_STATE", task.id, task.status, new_status)
        if new_status in (PROCESSING, ABORTED) and task.status not in STARTABLE:
            raise api_error(
                "ENTRY_VENDOR_TASK_ITEM_COULD_NOT_BE_UPDATED",
                f"Cannot move task [{task.id}] from status [{STATUS_NAMES[task.status]}] "
                f"to [{STATUS_NAMES[new_status]}]",
            )
    field_names = {"errDescription": "err_description", "accuracy": "accuracy",
                   "outputObjectId": "output_object_id", "externalTaskId": "external_task_id"}  # fmt: skip
    for name, attr in field_names.items():
        if name in changes:
            setattr(task, attr, changes[name])
    task.updated_at = state.now()
    if new_status is not None:
        state.set_status(task, new_status)
    return render_task(state, task, p)


def extend_access_key(state: KalturaState, session: Session | None, p: dict[str, Any]) -> dict[str, Any]:
    _missing(p, "id")
    assert session is not None
    task = _vendor_task(state, session, p["id"])
    if task.status not in (SCHEDULED, PROCESSING):  # facts.md: only in SCHEDULED or PROCESSING
        raise api_error("CANNOT_EXTEND_ACCESS_KEY")
    state.extend_access_key(task)
    return render_task(state, task, p)


# ----------------------------------------------------------------------------- schedule_scheduleevent


def event_get(state: KalturaState, session: Session | None, p: dict[str, Any]) -> dict[str, Any]:
    _missing(p, "scheduleEventId")
    assert session is not None
    event = state.events.get(_as_int(p["scheduleEventId"], -1) or -1)
    if event is None or not _visible_to_key(state, session, event.partner_id, None, event.id):
        raise api_error("INVALID_OBJECT_ID", p["scheduleEventId"])
    return event.render()


def update_live_feature(state: KalturaState, session: Session | None, p: dict[str, Any]) -> dict[str, Any]:
    _missing(p, "scheduledEventId", "featureName", "liveFeature")
    assert session is not None
    feature = p["liveFeature"]
    if not isinstance(feature, dict):
        raise api_error("MISSING_MANDATORY_PARAMETER", "liveFeature")
    # facts.md: liveFeature[objectType]=KalturaLiveCaptionFeature is required (KalturaLiveFeature is abstract).
    _check_object_type(feature, {"KalturaLiveCaptionFeature"}, "KalturaLiveFeature", abstract=True)
    name = str(p["featureName"])
    try:
        event = state.events.get(_as_int(p["scheduledEventId"], -1) or -1)
        if event is None or not _visible_to_key(state, session, event.partner_id, None, event.id):
            raise api_error("INVALID_OBJECT_ID", p["scheduledEventId"])
        current = event.feature(name)
        if current is None:
            raise api_error("FEATURE_NAME_NOT_FOUND", name)
        for key, kind in FEATURE_UPDATABLE.items():  # merges only the fields sent
            if key not in feature:
                continue
            value = feature[key]
            if value is NULL:
                current.pop(key, None)
            elif kind is int:
                number = _as_int(value)
                if number is None:
                    raise api_error("PROPERTY_VALIDATION_NUMERIC_VALUE", key)
                current[key] = number
            else:
                current[key] = str(value)
        event.updated_at = state.now()
        logging.getLogger("emulators.kaltura").info(
            "Kaltura EMULATOR: feature %s updated (%s)",
            name,
            ", ".join(sorted(k for k in feature if k != "objectType")),  # field names only: values are secrets
            extra={"event_id": event.id, "task_id": name.rsplit("-", 1)[-1]},
        )
    except KalturaAPIError as exc:
        # The server rethrows any failure inside its lock as CANNOT_UPDATE_SCHEDULE_EVENT_FEATURE.
        if state.feature_errors == "wrapped":
            raise api_error("CANNOT_UPDATE_SCHEDULE_EVENT_FEATURE", name) from exc
        raise
    return event.render()


# ----------------------------------------------------------------------------- reach_vendorcatalogitem


def catalog_get(state: KalturaState, session: Session | None, p: dict[str, Any]) -> dict[str, Any]:
    _missing(p, "id")
    item = state.catalog.get(_as_int(p["id"], -1) or -1)
    if item is None:
        raise api_error("CATALOG_ITEM_NOT_FOUND", p["id"])
    return item.render()


def system_ping(_state: KalturaState, _s: Session | None, _p: dict[str, Any]) -> bool:
    return True


# (service, action) → (handler, KS kinds allowed; None = no KS needed). Lowercase: Kaltura's
# service ids are lowercase and PHP action names are case-insensitive.
ACTIONS: dict[tuple[str, str], tuple[Handler, frozenset[str] | None]] = {
    ("session", "start"): (session_start, None),
    ("session", "startwidgetsession"): (session_start_widget, None),
    ("session", "get"): (session_get, ANY),
    ("apptoken", "startsession"): (app_token_start, frozenset({"widget", "vendor", "vendor_user"})),
    ("system", "ping"): (system_ping, None),
    ("reach_entryvendortask", "getjobs"): (get_jobs, VENDOR),
    ("reach_entryvendortask", "updatejob"): (update_job, VENDOR),
    ("reach_entryvendortask", "extendaccesskey"): (extend_access_key, VENDOR),
    ("reach_entryvendortask", "get"): (task_get, ACCESS_KEY),
    ("schedule_scheduleevent", "get"): (event_get, ACCESS_KEY),
    ("schedule_scheduleevent", "updatelivefeature"): (update_live_feature, ACCESS_KEY),
    ("reach_vendorcatalogitem", "get"): (catalog_get, VENDOR | ACCESS_KEY),
}
SERVICES = {service for service, _ in ACTIONS}


def ks_of(params: dict[str, Any]) -> str:
    value = params.get("ks")
    return "" if value is None or value is NULL else str(value).strip()


def classify_ks(state: KalturaState, ks: str) -> str | None:
    """The kind of KS a call carried, for the call records: a session kind, or
    ``invalid`` / ``expired`` / ``revoked``; None when there was no KS."""
    if not ks:
        return None
    with state.lock:
        try:
            return state.sessions.validate(ks, state.clock()).kind
        except KalturaAPIError as exc:
            desc = exc.args_map.get("ERR_DESC", "")
            return {"EXPIRED": "expired", "LOGOUT": "revoked"}.get(desc, "invalid")


def dispatch(state: KalturaState, service: str, action: str, params: dict[str, Any]) -> Any:
    """Run one API call and return its result; raises KalturaAPIError."""
    service_id, action_id = (service or "").lower(), (action or "").lower()
    if not service_id:
        raise api_error("SERVICE_NOT_SPECIFIED")
    if service_id not in SERVICES:
        raise api_error("SERVICE_DOES_NOT_EXISTS", service)
    if not action_id:
        raise api_error("ACTION_NOT_SPECIFIED")
    entry = ACTIONS.get((service_id, action_id))
    if entry is None:
        raise api_error("ACTION_DOES_NOT_EXISTS", action, service)
    handler, kinds = entry
    with state.lock:
        session = None
        ks = ks_of(params)
        if kinds is not None:
            if not ks:
                raise api_error("MISSING_KS")
            session = state.sessions.validate(ks, state.clock())
            if session.kind not in kinds:
                raise api_error("SERVICE_FORBIDDEN", f"{service_id}->{action_id}")
        return handler(state, session, params)
