"""Mosquitto's configuration for the fleet: a TLS listener that admits only certificates from central's CA,
and an ACL from the registry that binds each kiosk to its own topics.

The broker takes each client's certificate CN as its username
(``use_identity_as_username``) and as its client id (``use_username_as_clientid``,
so one kiosk cannot take over another's session by reusing its client id).
A kiosk may write only its own attendance and status and read only its own ack
and bundle; central (CN ``central``) reads every kiosk's attendance and status
and writes acks and bundles. A revoked kiosk is left out of the ACL and its
certificates are listed in the CRL.

On SIGHUP, Mosquitto 2.0 re-reads its configuration and the ACL file and, for a
listener with ``require_certificate`` and a ``crlfile``, rebuilds the TLS context
and so re-reads the CA and the CRL too (``mosquitto_security_apply_default``):
after a revocation a reload is enough, no restart. A revoked kiosk that is still
connected keeps its socket until it drops, but from the reload on the ACL lets it
neither publish nor receive anything, and its next connection fails the handshake.

Started as root, Mosquitto changes to its user (``user``, default mosquitto) before it writes
its pid file, log and ``mosquitto.db``, and re-reads the files above as that user on SIGHUP.
So, written as root, the configuration is readable by that user's group, and what the broker
writes lives in ``state/`` and the log file, owned by it.
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
import shutil
import signal
import stat
from dataclasses import dataclass, field
from pathlib import Path

from contract import DEFAULT_PREFIX, Kind, Topics
from contract.topics import PUBLISHER

from .errors import CentralError
from .pki import CENTRAL_CN, CentralPki
from .store import Store

log = logging.getLogger("central.broker_config")

CONF, ACL, PID, STATE = "mosquitto.conf", "acl", "mosquitto.pid", "state"
CA, CERT, KEY, CRL = "ca.crt", "broker.crt", "broker.key", "crl.pem"
DEFAULT_TLS_PORT = 8883
BROKER_GROUP = "mosquitto"
BROKER_USER = "mosquitto"  # whom Mosquitto drops to when started as root and no `user` is set


class BrokerConfigError(CentralError, OSError):
    """The broker's files cannot be written or the broker cannot be told to reload."""


@dataclass(frozen=True)
class BrokerAccount:
    """The user a root-started Mosquitto drops to: what it writes must be its own."""

    name: str
    uid: int
    gid: int


@dataclass(frozen=True)
class BrokerFiles:
    dir: Path
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @property
    def conf(self) -> Path:
        return self.dir / CONF

    @property
    def acl(self) -> Path:
        return self.dir / ACL

    @property
    def crl(self) -> Path:
        return self.dir / CRL

    @property
    def state(self) -> Path:
        """What the broker itself writes (pid file, mosquitto.db): owned by the broker's user."""
        return self.dir / STATE

    @property
    def pid(self) -> Path:
        return self.state / PID


def acl_text(store: Store, prefix: str = DEFAULT_PREFIX) -> str:
    """The ACL file: central's rights, then each active kiosk's own topics; revoked kiosks get nothing."""
    topics = Topics(prefix)
    lines = [
        "# Written by `hall central broker-config` from the registry; rewritten on every revocation. Do not edit.",
        f"user {CENTRAL_CN}",
    ]
    for kind in Kind:
        mode = "write" if PUBLISHER[kind] == "central" else "read"
        lines.append(f"topic {mode} {prefix}/+/{kind.value}")
    lines.append(f"topic write {topics.central_heartbeat()}")  # central's broker liveness check (central/broker_link.py)
    for row in store.rows("SELECT id FROM devices WHERE revoked_at IS NULL ORDER BY id"):
        device = row["id"]
        lines += ["", f"user {device}"]
        for kind in Kind:
            mode = "write" if PUBLISHER[kind] == "device" else "read"  # only under its own id
            lines.append(f"topic {mode} {topics.topic(device, kind)}")
    return "\n".join(lines) + "\n"


def conf_text(files: BrokerFiles, *, port: int, bind: str | None, user: str | None, log_file: Path | None) -> str:
    d = files.dir
    lines = [
        "# Written by `hall central broker-config`. Kiosks and central connect with certificates from central's CA.",
        f"pid_file {files.pid}",
        "per_listener_settings false",
        "allow_anonymous false",
        f"acl_file {files.acl}",
        "persistence true",
        f"persistence_location {files.state}/",
        # Central's persistent session holds records while central is down; a cap would drop them.
        "max_queued_messages 0",
    ]
    if user:
        lines.append(f"user {user}")
    lines += [f"log_dest file {log_file}" if log_file else "log_dest syslog", "log_type error", "log_type warning",
              "log_type notice", "log_type information", "connection_messages true"]
    lines += [
        "",
        f"listener {port}{' ' + bind if bind else ''}",
        f"cafile {d / CA}",
        f"certfile {d / CERT}",
        f"keyfile {d / KEY}",
        f"crlfile {files.crl}",
        "require_certificate true",
        "use_identity_as_username true",
        "use_username_as_clientid true",
    ]
    return "\n".join(lines) + "\n"


def _write(path: Path, text: str | bytes, mode: int, group: int | None) -> None:
    data = text.encode() if isinstance(text, str) else text
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        if group is not None:
            os.fchown(fd, -1, group)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def broker_account(user: str | None) -> BrokerAccount | None:
    """Whom a root-started broker runs as, when that is not root; None when it keeps our own user.

    Mosquitto changes user only when started as root (to ``user``, default mosquitto), and opens
    its pid file, log and persistence file after the change, and re-reads the ACL, CRL and
    certificates on SIGHUP as that user.
    """
    if os.geteuid() != 0:
        return None
    name = user or BROKER_USER
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise BrokerConfigError(f"a broker started as root runs as user {name!r}, and there is no such user: "
                                "install mosquitto (it creates its user) or pass --user") from None
    return None if entry.pw_uid == 0 else BrokerAccount(name, entry.pw_uid, entry.pw_gid)


def _cannot_enter(path: Path, account: BrokerAccount) -> Path | None:
    """The first directory on the way to ``path`` that ``account`` may not enter, if any."""
    groups = set(os.getgrouplist(account.name, account.gid))
    for d in reversed(path.parents):
        st = d.stat()
        if st.st_uid == account.uid:
            bit = stat.S_IXUSR
        elif st.st_gid in groups:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return d
    return None


def _owned_by(path: Path, account: BrokerAccount | None, mode: int, *, directory: bool) -> None:
    """Make ``path`` (created if missing) the broker's own: it writes there after dropping root."""
    if directory:
        path.mkdir(parents=True, exist_ok=True)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, mode))
    if account is not None:
        os.chown(path, account.uid, account.gid)
    os.chmod(path, mode)


def _broker_group() -> int | None:
    """The mosquitto group, if it exists and we may hand files to it; the broker drops to that user."""
    try:
        gid = grp.getgrnam(BROKER_GROUP).gr_gid
    except KeyError:
        return None
    return gid if os.geteuid() == 0 or gid in os.getgroups() else None


def write_broker_config(
    store: Store,
    pki: CentralPki,
    out_dir: Path,
    *,
    prefix: str = DEFAULT_PREFIX,
    port: int = DEFAULT_TLS_PORT,
    bind: str | None = None,
    hosts: tuple[str, ...] = (),
    user: str | None = None,
    log_file: Path | None = None,
) -> BrokerFiles:
    """Write mosquitto.conf, the ACL, the CA, a fresh broker certificate for ``hosts`` and the CRL into ``out_dir``.

    Run as root, the files are made right for the user the broker drops to (``user``, default
    mosquitto): it may read the configuration and own what it writes (``state/``, the log file).
    ``BrokerFiles.warnings`` says when that user cannot reach them, so the broker would not start.
    """
    files = BrokerFiles(Path(out_dir).resolve())
    account = broker_account(user)
    log_file = Path(log_file).resolve() if log_file else None
    try:
        files.dir.mkdir(parents=True, exist_ok=True)
        group = account.gid if account is not None else _broker_group()
        if group is not None:
            os.chown(files.dir, -1, group)
        os.chmod(files.dir, 0o750)
        _owned_by(files.state, account, 0o750, directory=True)
        if log_file is not None:
            _owned_by(log_file, account, 0o640, directory=False)
        pki.ensure_ca()
        cert, key = pki.issue_broker_certificate(hosts)
        _write(files.dir / CA, pki.ca_pem(), 0o644, group)
        _write(files.dir / CERT, cert.read_bytes(), 0o644, group)
        # Readable by the broker's group: mosquitto re-reads it on SIGHUP after dropping root.
        _write(files.dir / KEY, key.read_bytes(), 0o640 if group is not None else 0o600, group)
        refresh(store, pki, files, prefix=prefix)
        # As root the user is written out, so the files' owner and the broker's user cannot drift apart.
        conf_user = account.name if account is not None else user
        _write(files.conf, conf_text(files, port=port, bind=bind, user=conf_user, log_file=log_file), 0o644, group)
    except OSError as exc:
        raise BrokerConfigError(f"cannot write the broker configuration in {files.dir}: {exc}") from exc
    if account is None:
        return files
    blocked = {_cannot_enter(p, account) for p in (files.state, log_file) if p is not None} - {None}
    warnings = tuple(
        f"the broker runs as {account.name} and cannot enter {d} ({stat.filemode(d.stat().st_mode)} {d.owner()}): "
        f"it would not start. Write its files where it can (e.g. --out /etc/mosquitto/hall) or let it through (chmod o+x {d})"
        for d in sorted(blocked))
    return BrokerFiles(files.dir, warnings)


def refresh(store: Store, pki: CentralPki, files: BrokerFiles, *, prefix: str = DEFAULT_PREFIX) -> None:
    """Rewrite the CRL and the ACL from the registry (after a registration or a revocation)."""
    group = _broker_group()
    crl = pki.write_crl(store)
    _write(files.crl, crl.read_bytes(), 0o644, group)
    _write(files.acl, acl_text(store, prefix), 0o644, group)


def reload_broker(files: BrokerFiles) -> int | None:
    """SIGHUP the broker named in the pid file; returns its pid, or None when no broker is running from it."""
    try:
        pid = int(files.pid.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        log.warning("stale pid file %s: no process %d", files.pid, pid)
        return None
    except PermissionError as exc:
        raise BrokerConfigError(f"not allowed to signal the broker (pid {pid}): run as its user or root") from exc
    return pid


def have_broker_config(files: BrokerFiles) -> bool:
    return files.conf.is_file() and files.acl.is_file()


def mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
