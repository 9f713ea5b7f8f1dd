"""A thin facade over the official ``KalturaApiClient`` for the REACH live lifecycle (docs/design.md
section 2; issue 3).

- The official client keeps ``setKs`` / ``setResponseProfile`` between calls (facts.md): every
  call here starts from an empty request configuration and sets exactly what it needs.
- One client per thread (the official client queues calls on the instance); the vendor KS is
  shared by all threads and renewed before it expires.
- Vendor calls (getJobs, updateJob, extendAccessKey) use the vendor KS; an ``INVALID_KS`` whose
  message says EXPIRED renews the session once and retries. Per-task calls (get,
  scheduleEvent.get/updateLiveFeature, vendorCatalogItem.get) use the task's ``accessKey``.
- Failures become ``shared.kaltura.errors`` exceptions that keep the code; an ``observe`` hook
  gets (service, action, seconds, code-or-None) per HTTP call, for the caller's metrics.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import requests
from KalturaClient import KalturaClient, KalturaConfiguration
from KalturaClient.Base import KalturaParams
from KalturaClient.exceptions import KalturaClientException, KalturaException
from KalturaClient.Plugins.Core import KalturaFilterPager, KalturaResponseProfileHolder, KalturaSessionType
from KalturaClient.Plugins.Reach import KalturaEntryVendorTask, KalturaEntryVendorTaskFilter
from KalturaClient.Plugins.Schedule import KalturaLiveCaptionFeature

from shared.kaltura import errors
from shared.kaltura.errors import KalturaError, make_error, redact
from shared.kaltura.models import (
    PENDING,
    SCHEDULED,
    CatalogItem,
    ReachProfile,
    ScheduleEvent,
    TaskDetails,
    VendorTask,
    feature_name,
    val,
)
from shared.settings import KalturaSettings

log = logging.getLogger(__name__)

Observer = Callable[[str, str, float, "str | None"], None]
REACH_VENDOR_PROFILE = "reach_vendor"  # the response profile of the seed's `get` example
_DEFAULT_TAG = "python-26-10-22"  # the official client's clientTag, kept as the prefix (facts.md)
_MAX_PAGES = 1000


class _TransportError(Exception):
    def __init__(self, code: str, detail: str) -> None:
        self.code = code
        self.detail = detail
        super().__init__(detail)


class _Client(KalturaClient):
    """The official client with a pooled HTTP session and an HTTP status check.

    The stock ``doHttpRequest`` reads any body (a proxy's 502 page ends as an XML parse error)
    and retries connection errors with 5 s sleeps inside the call; here a non-200 status or a
    network failure is raised at once, typed, and retries belong to the Celery task.
    """

    def __init__(self, config: KalturaConfiguration, http: requests.Session) -> None:
        super().__init__(config)
        self._http = http

    def doHttpRequest(self, url, params=None, files=None):  # overrides the client's
        params = params if params is not None else KalturaParams()
        headers = {"Accept": "text/xml", "Accept-Encoding": "gzip", "Content-Type": "application/json"}
        try:
            response = self._http.post(url, json=params.get(), headers=headers, timeout=self.config.requestTimeout)
        except requests.RequestException as exc:
            raise _TransportError(errors.NETWORK, type(exc).__name__) from None
        self.responseHeaders = response.headers
        if response.status_code != 200:
            raise _TransportError(errors.HTTP_ERROR, f"HTTP {response.status_code}")
        return response.content


class VendorSession:
    """The vendor KS, shared by threads, renewed ``margin`` seconds before it expires."""

    def __init__(self, start: Callable[[], tuple[str, float]], clock: Callable[[], float] = time.time) -> None:
        self._start = start
        self._clock = clock
        self._lock = threading.Lock()
        self._ks = ""
        self._expires_at = 0.0
        self._lifetime = 0.0
        self.renewals = 0

    def ks(self) -> str:
        with self._lock:
            margin = min(600.0, self._lifetime / 10)
            if not self._ks or self._clock() >= self._expires_at - margin:
                started = self._clock()
                self._ks, self._expires_at = self._start()
                self._lifetime = max(0.0, self._expires_at - started)
                self.renewals += 1
            return self._ks

    def invalidate(self, ks: str) -> None:
        """Forget ``ks`` (unless another thread already replaced it) so the next call renews."""
        with self._lock:
            if self._ks == ks:
                self._ks = ""


class KalturaFacade:
    """The calls of the REACH live lifecycle, typed. Thread-safe."""

    def __init__(
        self,
        settings: KalturaSettings,
        *,
        observe: Observer | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not settings.admin_secret.get_secret_value() and not (
            settings.app_token_id and settings.app_token.get_secret_value()
        ):
            log.warning("no Kaltura vendor credentials: set an admin secret or an app token")
        self.settings = settings
        self._observe = observe or (lambda *_: None)
        self._clock = clock
        self._hash = settings.app_token_hash_type.lower()  # hashlib names: md5, sha1, sha256, sha512
        self._local = threading.local()
        self.session = VendorSession(self._start_vendor_session, clock)

    # --- plumbing --------------------------------------------------------------------------
    def _client(self) -> _Client:
        client = getattr(self._local, "client", None)
        if client is None:
            config = KalturaConfiguration(self.settings.service_url.rstrip("/"))
            config.requestTimeout = self.settings.request_timeout_seconds
            http = requests.Session()
            client = _Client(config, http)
            self._local.client = client
        return client

    def _tag(self, task_id: str | None) -> str:
        # facts.md: Kaltura's guide asks for <default>_vendorName-<vendorPartnerId>[-<taskId>].
        tag = f"{_DEFAULT_TAG}_{self.settings.vendor_name}-{self.settings.partner_id}"
        return f"{tag}-{task_id}" if task_id else tag

    def call(
        self,
        service: str,
        action: str,
        fn: Callable[[KalturaClient], Any],
        *,
        ks: str = "",
        profile: str = "",
        task_id: str | None = None,
    ) -> Any:
        """One API call with exactly this ks / response profile (nothing kept from before)."""
        client = self._client()
        client.requestConfiguration.clear()
        if ks:
            client.setKs(ks)
        if profile:
            client.setResponseProfile(KalturaResponseProfileHolder(systemName=profile))
        client.setClientTag(self._tag(task_id))
        client.callsQueue = []
        client.multiRequestReturnType = None
        code: str | None = None
        started = time.perf_counter()
        try:
            return fn(client)
        except KalturaException as exc:
            code = str(exc.code)
            raise make_error(code, redact(str(exc.message), ks), service=service, action=action) from None
        except _TransportError as exc:
            code = exc.code
            raise make_error(code, exc.detail, service=service, action=action) from None
        except KalturaClientException as exc:
            code = errors.BAD_RESPONSE
            raise make_error(code, f"client error {exc.code}", service=service, action=action) from None
        except (AttributeError, TypeError, ValueError) as exc:
            # The client trips over a body that is not a Kaltura envelope (e.g. an HTML page).
            code = errors.BAD_RESPONSE
            raise make_error(code, type(exc).__name__, service=service, action=action) from None
        finally:
            client.requestConfiguration.clear()
            self._observe(service, action, time.perf_counter() - started, code)

    def vendor_call(self, service: str, action: str, fn: Callable[[KalturaClient], Any], **kw: Any) -> Any:
        """A call with the vendor KS; an expired KS renews the session once and retries."""
        ks = self.session.ks()
        try:
            return self.call(service, action, fn, ks=ks, **kw)
        except KalturaError as exc:
            if not exc.expired_ks:
                raise
            log.info("vendor KS expired: renewing once", extra={"service": service, "action": action})
            self.session.invalidate(ks)
            return self.call(service, action, fn, ks=self.session.ks(), **kw)

    # --- sessions --------------------------------------------------------------------------
    def _start_vendor_session(self) -> tuple[str, float]:
        s = self.settings
        expiry = s.session_expiry_seconds
        now = self._clock()
        if s.app_token_id and s.app_token.get_secret_value():
            return self._app_token_session(expiry, now)
        ks = self.call(
            "session",
            "start",
            lambda c: c.session.start(
                s.admin_secret.get_secret_value(), "", KalturaSessionType.ADMIN, s.partner_id, expiry
            ),
        )
        return str(ks), now + expiry

    def _app_token_session(self, expiry: int, now: float) -> tuple[str, float]:
        """Kaltura's app-token flow: an unprivileged widget session, then
        ``appToken.startSession(id, hash(widgetKs + token))`` with that widget KS."""
        s = self.settings
        widget = self.call(
            "session",
            "startWidgetSession",
            lambda c: c.session.startWidgetSession(f"_{s.partner_id}", expiry),
        )
        widget_ks = str(val(widget, "ks", ""))
        token_hash = hashlib.new(self._hash, (widget_ks + s.app_token.get_secret_value()).encode()).hexdigest()
        info = self.call(
            "apptoken",
            "startSession",
            lambda c: c.appToken.startSession(s.app_token_id, token_hash, NotImplemented, NotImplemented, expiry),
            ks=widget_ks,
        )
        ks = str(val(info, "ks", ""))
        expires = float(val(info, "expiry", 0) or 0)
        return ks, expires if expires > now else now + expiry

    # --- REACH -----------------------------------------------------------------------------
    def iter_jobs(
        self, statuses: tuple[int, ...] = (PENDING, SCHEDULED), page_size: int = 500, id_equal: str | None = None
    ) -> Iterator[VendorTask]:
        """``entryVendorTask.getJobs`` with the vendor KS, every page (docs/design.md section 2, item 1)."""
        seen = 0
        for index in range(1, _MAX_PAGES + 1):
            flt = KalturaEntryVendorTaskFilter(statusIn=",".join(str(s) for s in statuses))
            if id_equal is not None:
                flt.idEqual = int(id_equal)
            pager = KalturaFilterPager(pageSize=page_size, pageIndex=index)
            page = self.vendor_call(
                "reach_entryvendortask", "getJobs", lambda c, f=flt, p=pager: c.reach.entryVendorTask.getJobs(f, p)
            )
            objects = val(page, "objects") or []
            total = int(val(page, "totalCount", 0) or 0)
            for obj in objects:
                yield VendorTask.from_client(obj)
            seen += len(objects)
            if not objects or seen >= total or len(objects) < page_size:
                return

    def get_jobs(self, statuses: tuple[int, ...] = (PENDING, SCHEDULED), page_size: int = 500) -> list[VendorTask]:
        return list(self.iter_jobs(statuses, page_size))

    def find_job(self, task_id: str) -> VendorTask | None:
        """One task of getJobs by id (``filter[idEqual]``; the scan also copes with a server
        that ignores the id filter)."""
        for job in self.iter_jobs(id_equal=task_id):
            if job.id == str(task_id):
                return job
        return None

    def get_task(self, task_id: str, access_key: str) -> TaskDetails:
        """``entryVendorTask.get`` with the task's accessKey and the ``reach_vendor`` profile."""
        obj = self.call(
            "reach_entryvendortask",
            "get",
            lambda c: c.reach.entryVendorTask.get(int(task_id)),
            ks=access_key,
            profile=REACH_VENDOR_PROFILE,
            task_id=task_id,
        )
        related = val(obj, "relatedObjects") or {}
        item = _first(related.get("reach_vendor_catalog_item"))
        profile = _first(related.get("reach_vendor_profile"))
        return TaskDetails(
            task=VendorTask.from_client(obj),
            catalog_item=CatalogItem.from_client(item) if item is not None else None,
            reach_profile=ReachProfile.from_client(profile) if profile is not None else None,
        )

    def get_catalog_item(self, item_id: int, access_key: str, task_id: str | None = None) -> CatalogItem:
        obj = self.call(
            "reach_vendorcatalogitem",
            "get",
            lambda c: c.reach.vendorCatalogItem.get(int(item_id)),
            ks=access_key,
            task_id=task_id,
        )
        return CatalogItem.from_client(obj)

    def get_schedule_event(self, event_id: int, access_key: str, task_id: str | None = None) -> ScheduleEvent:
        obj = self.call(
            "schedule_scheduleevent",
            "get",
            lambda c: c.schedule.scheduleEvent.get(int(event_id)),
            ks=access_key,
            task_id=task_id,
        )
        return ScheduleEvent.from_client(obj)

    def update_live_feature(
        self,
        event_id: int,
        task_id: str,
        access_key: str,
        *,
        media_url: str,
        media_key: str,
        caption_url: str,
        caption_token: str,
    ) -> ScheduleEvent:
        """Give Kaltura the task's endpoints: only the four fields (the server merges what is sent)."""
        feature = KalturaLiveCaptionFeature(
            mediaUrl=media_url, mediaKey=media_key, captionUrl=caption_url, captionToken=caption_token
        )
        try:
            obj = self.call(
                "schedule_scheduleevent",
                "updateLiveFeature",
                lambda c: c.schedule.scheduleEvent.updateLiveFeature(int(event_id), feature_name(task_id), feature),
                ks=access_key,
                task_id=task_id,
            )
        except KalturaError as exc:
            exc.message = redact(exc.message, media_key, caption_token)
            raise
        return ScheduleEvent.from_client(obj)

    def update_job(
        self,
        task_id: str,
        status: int | None = None,
        *,
        err_description: str | None = None,
        external_task_id: str | None = None,
        accuracy: int | None = None,
    ) -> VendorTask:
        """``entryVendorTask.updateJob`` with the vendor KS: the vendor-settable fields only."""
        fields: dict[str, Any] = {}
        if status is not None:
            fields["status"] = status
        if err_description is not None:
            fields["errDescription"] = err_description
        if external_task_id is not None:
            fields["externalTaskId"] = external_task_id
        if accuracy is not None:
            fields["accuracy"] = accuracy
        task = KalturaEntryVendorTask(**fields)
        obj = self.vendor_call(
            "reach_entryvendortask",
            "updateJob",
            lambda c: c.reach.entryVendorTask.updateJob(int(task_id), task),
            task_id=task_id,
        )
        return VendorTask.from_client(obj)

    def extend_access_key(self, task_id: str) -> VendorTask:
        obj = self.vendor_call(
            "reach_entryvendortask",
            "extendAccessKey",
            lambda c: c.reach.entryVendorTask.extendAccessKey(int(task_id)),
            task_id=task_id,
        )
        return VendorTask.from_client(obj)


def _first(response: Any) -> Any:
    objects = val(response, "objects") or []
    return objects[0] if objects else None
