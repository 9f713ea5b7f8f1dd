"""Where a secret may travel without TLS (issue 19).

The Kaltura service URL carries the vendor's credentials and every task's accessKey, the
KWIKmotion URL the vendor token, Redis every key, token hash and caption: an ``http://``,
``ws://`` or ``redis://`` URL to another machine hands them to anyone on the path. Such a URL is
accepted only to a loopback host (127.0.0.0/8, ::1, ``localhost``: the embedded Redis, the
emulators of ``make demo`` and the tests) or to a host named in ``REACHLIVE_ALLOW_INSECURE_HOSTS``
(the compose network's ``redis``, the dev overlay's in-cluster emulators), ``*`` naming every
host. Names are compared as written, never resolved: a name that resolves to 127.0.0.1 is not
taken for loopback (the answer may change between the check and the connection).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

ALLOW_VARIABLE = "REACHLIVE_ALLOW_INSECURE_HOSTS"
ANY_HOST = "*"


def normal_host(host: str) -> str:
    """``"[::1]"`` → ``"::1"``, ``"Redis."`` → ``"redis"``: one spelling per host."""
    name = host.strip().strip("[]").rstrip(".").lower()
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return name


def is_loopback(host: str) -> bool:
    name = normal_host(host)
    if name == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 (Python 3.11 does not call it loopback itself)
    return ip.is_loopback


def allowed_hosts(value: str) -> frozenset[str]:
    """The comma list of ``REACHLIVE_ALLOW_INSECURE_HOSTS``, each host in its normal spelling."""
    return frozenset(normal_host(h) for h in value.split(",") if h.strip())


def refused(hosts: Iterable[str], allowed: str) -> bool:
    """True if any of ``hosts`` is neither loopback nor allowed by ``allowed`` (the setting)."""
    allow = allowed_hosts(allowed)
    if ANY_HOST in allow:
        return False
    return any(not is_loopback(h) and normal_host(h) not in allow for h in hosts)


def problem(scheme: str, carries: str, instead: str) -> str:
    """The settings error for a refused URL: what it would expose and the ways out. No part of
    the value (settings errors never echo one)."""
    return (
        f"{scheme}:// would carry {carries} in clear to a host that is not loopback: "
        f"use {instead}, or name the host in {ALLOW_VARIABLE} (a network you trust)"
    )
