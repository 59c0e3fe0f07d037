"""What ``ogenius serve`` was asked for: listen addresses, security and limits, as one frozen object.

Addresses are ``HOST:PORT`` (``[::1]:8080`` for IPv6; a bare ``PORT`` means 127.0.0.1). Port 0 picks a free port;
the bound port is what the apps see (:meth:`ServeSettings.bound`).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import socket
from dataclasses import dataclass

DEFAULT_MAX_BODY = 8 * 1024 * 1024
"""Default cap on an HTTP request body and on one WebSocket message, in bytes."""
DEFAULT_RESPONSES_STORE = 1000
"""Default number of finished Responses API responses kept for ``previous_response_id`` (responses_store.py)."""
DEFAULT_RESPONSES_STORE_BYTES = 128 * 1024 * 1024
"""Default cap on the bytes those stored responses take."""
DEFAULT_HEADER_TIMEOUT = 10
"""Default seconds a connection has to finish sending a request's headers (limits.py)."""
DEFAULT_IDLE_TIMEOUT = 30
"""Default seconds a kept-alive HTTP connection may wait for its next request; also the WebSocket ping interval and
the wait for its pong. Longer than common clients' own keep-alive (httpx: 5 s), so they close first, never racing
a request against the server's close."""
DEFAULT_MAX_CONNECTIONS = 256
"""Default cap on open connections per listener: two listeners at the cap stay well within the usual limit of
1024 open files."""


class AddressError(ValueError):
    """An address that cannot be parsed, or that may not be used as asked."""


@dataclass(frozen=True)
class Address:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Address:
        text = text.strip()
        if text.isdigit():
            host, port_text = "127.0.0.1", text
        elif text.startswith("["):
            host, sep, rest = text[1:].partition("]")
            if not sep or not rest.startswith(":"):
                raise AddressError(f"{text!r} is not [IPV6]:PORT")
            port_text = rest[1:]
        else:
            host, sep, port_text = text.rpartition(":")
            if not sep or not host or ":" in host:
                raise AddressError(f"{text!r} is not HOST:PORT (write IPv6 addresses as [::1]:8080)")
        if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
            raise AddressError(f"{text!r}: the port must be a number from 0 to 65535")
        return cls(host.lower(), int(port_text))

    @property
    def is_wildcard(self) -> bool:
        return self.host in ("0.0.0.0", "::", "")

    @property
    def is_loopback(self) -> bool:
        """True when every address the host name resolves to is a loopback one."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            pass
        try:
            infos = socket.getaddrinfo(self.host, None, type=socket.SOCK_STREAM)
        except OSError:
            return False
        return bool(infos) and all(ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback for info in infos)

    def url(self, scheme: str) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class ServeSettings:
    """The server's settings. ``api_key`` None: no key (only allowed on loopback addresses)."""

    addr: Address = Address("127.0.0.1", 8080)
    ws_addr: Address = Address("127.0.0.1", 8081)
    api_key: str | None = None
    allow_hosts: tuple[str, ...] = ()
    """Extra Host header names to accept (a reverse proxy's name, a LAN host name)."""
    allow_origins: tuple[str, ...] = ()
    """Extra browser origins (``scheme://host[:port]``) allowed to call the API and open WebSockets (CORS)."""
    max_body: int = DEFAULT_MAX_BODY
    max_conversations_per_socket: int = 16
    responses_store: int = DEFAULT_RESPONSES_STORE
    """Most Responses API responses kept (least recently used evicted first); 0 keeps none."""
    responses_store_bytes: int = DEFAULT_RESPONSES_STORE_BYTES
    """Most bytes the kept responses take (their JSON size, conversations included)."""
    header_timeout: int = DEFAULT_HEADER_TIMEOUT
    idle_timeout: int = DEFAULT_IDLE_TIMEOUT
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    """Per listener; connections over it get 503 and are closed (limits.py)."""

    def check(self) -> None:
        """Refuses what the security posture forbids (DESIGN.md §6)."""
        if self.addr == self.ws_addr and self.addr.port != 0:
            raise AddressError(f"--addr and --ws-addr are both {self.addr}; give the WebSocket its own port")
        if self.api_key is not None and not self.api_key.strip():
            raise AddressError("the API key is empty")
        for flag, addr in (("--addr", self.addr), ("--ws-addr", self.ws_addr)):
            if self.api_key is None and not addr.is_loopback:
                raise AddressError(
                    f"refusing to listen on {addr} ({flag}) without an API key: anyone who can reach that address "
                    "could use the model. Set --api-key (or OGENIUS_API_KEY), or bind 127.0.0.1"
                )
        if self.max_body < 1024:
            raise AddressError(f"--max-body-bytes {self.max_body}: must be at least 1024")
        for flag, value in (
            ("--header-timeout", self.header_timeout),
            ("--idle-timeout", self.idle_timeout),
            ("--max-connections", self.max_connections),
        ):
            if value < 1:
                raise AddressError(f"{flag} {value}: must be at least 1")

    def bound(self, http_port: int, ws_port: int) -> ServeSettings:
        """These settings with the ports actually bound (port 0 asks the system for one)."""
        return dataclasses.replace(
            self, addr=Address(self.addr.host, http_port), ws_addr=Address(self.ws_addr.host, ws_port)
        )
